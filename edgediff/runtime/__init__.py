"""Running what was built: a model or artifact directory → a Runner on its backend → images; the object
`edgediff.load` returns."""

"""File formats, torch-free: atomic writes, hardened JSON, the configs files record, model directories and
artifact directories (design §3). Every other layer builds on this one; it imports none of them."""

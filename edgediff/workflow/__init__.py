"""`edgediff pipeline`: the whole job — train, prune, distill, convert for every backend, sample, bench — as
resumable stages, with the README an app developer reads."""

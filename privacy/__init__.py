"""Personal data, one module per job: raw retention (retention.py), erasure on request
(erasure.py), key rotation (rotation.py), the key chain the warehouse is keyed under
(keys.py); what they share is rewriting files whole (_rewrite.py). The register of
forgotten shoppers is read by the service on the request path: engine/forgotten.py."""

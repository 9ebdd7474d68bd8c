"""Stage: what is here to work with. `cnnlab summary` (a network's layer table), `cnnlab datasets`,
`cnnlab models` and `cnnlab layers` (the layer language)."""

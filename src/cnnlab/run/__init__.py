"""The run-folder floor, between data/models and the stages: the typed files a run folder holds
(contract: the model card, the export manifest, the results of each verb), reading and writing the
folder (folder), the data a run is measured on (data) and batched forward passes (inference).
Every stage reads a run through this floor only."""

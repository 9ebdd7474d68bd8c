"""The base floor: what every stage uses and nothing stage-specific. Errors, atomic files, the
settings machinery, the typed-file reader, devices, processes (distributed), progress, saving a
figure, the console. Nothing here imports from the floors above (config, data, models, the run
folder, the stages, the facades)."""

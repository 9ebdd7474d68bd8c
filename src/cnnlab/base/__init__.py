"""The base floor: errors, atomic files, the settings machinery and every verb's settings (config),
devices, processes (distributed), progress and figures. Nothing here imports from the floors above
(data, models, the run folder, the stages, the facades)."""

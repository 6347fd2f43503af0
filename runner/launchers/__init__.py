"""How the planned runs are started (`roadmap run --launcher`): local runs them one after another in this process
(under torchrun too, one process per rank); children runs each as a child `roadmap run` process, on local GPUs
(gpus) or as Slurm jobs through submitit (slurm)."""

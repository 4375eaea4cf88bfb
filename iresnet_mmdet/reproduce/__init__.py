"""Reproduce the paper's SSD300 table: train and test its rows, resumable, with the cost up front.

The command line is ``tools/reproduce_table.py`` (docs/ssd300.md, "Reproducing the table"). Each
module holds one concern:

* :mod:`.rows`: the paper's rows and their configs, a row's folders and its state on disk;
* :mod:`.settings`: the settings that make a run, and the manifest that ties a work root to them;
* :mod:`.launch`: the commands that train and test a row (one process, torchrun, Slurm);
* :mod:`.output`: atomic writes of the work root's files, the console lines;
* :mod:`.cost`: images per epoch, the speed measurement and the GPU-hours estimate;
* :mod:`.checks`: the pre-flight checks (GPUs, data, ImageNet checkpoints, configs);
* :mod:`.smoke`: the toy-scale form of the flow (synthetic data, reduced models, CPU);
* :mod:`.plan`: each chosen row's config, state, cost and commands;
* :mod:`.report`: the table beside the paper's and the JSON of everything;
* :mod:`.slurm`: the batch jobs of a run on a Slurm cluster;
* :mod:`.driver`: the whole call: plan, checks, cost, then the run on this node or Slurm.
"""
from .driver import reproduce

__all__ = ['reproduce']

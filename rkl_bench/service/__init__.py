"""Layer 4: the experiment service on Ray Tune (the only layer that imports Ray).

One module per job: ``config`` (the typed YAML schema), ``dataset_specs``
(config entries -> dataset specs, files checked or forged before Ray
starts), ``ray_runtime`` (local loopback Ray or a cluster), ``datasets_store``
(datasets shared through the object store), ``eval_actors`` (the evaluation
actor pool), ``trainable`` (one trial), ``tuner`` (the grid and its Tune
settings), ``run`` (``rkl-bench run``). Importing this package imports
neither Ray nor torch: the CLI checks a config before paying for either.
"""

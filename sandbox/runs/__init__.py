"""What a run leaves and reads: its directory (``rundir``: config.json, metrics.csv, episodes.csv, summary.json),
policy files (``policy_file``), references (``reference``; a language task's is pretrained by ``pretrain``), the
random state (``snapshot``), the progress bar (``progress``), ``sandbox eval`` (``evaluate``), and the record of a
run's seam (``seam``)."""

"""Experiments over many runs: sweeps (``sweep``), their report (``report``), the README's studies (``studies``) and
the headline demo (``demo``)."""

"""Experiments over many runs: sweeps (``sweep``), their report (``report``), the README's studies (``studies``) and
the headline demo (``demo``); and what the lessons use to keep their sentences true of a student's run (``course``)."""

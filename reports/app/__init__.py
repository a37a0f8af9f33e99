"""The application: ``lutmac`` (:mod:`reports.app.cli`), the demo and the ``lutmac sim`` command.

This package is the one place that imports sim (the RTL simulators): the estimator side of
reports (cycles, energy, overhead tables, sweeps, ``lutmac report``) reads golden and hw only.
The contract is checked by import-linter (``[tool.importlinter]`` in pyproject.toml) in ``make test``.
"""

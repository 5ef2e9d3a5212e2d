"""Speed benchmarks (``sdaie bench``): tooling beside the package, never imported by its core.

:mod:`~sdaie.benchmarks.cli` is the command; :mod:`~sdaie.benchmarks.measuring` times work in
fresh processes; one module per section (:mod:`~sdaie.benchmarks.extractors`,
:mod:`~sdaie.benchmarks.datapath`, :mod:`~sdaie.benchmarks.oneclass`,
:mod:`~sdaie.benchmarks.binary`); :mod:`~sdaie.benchmarks.report` formats the tables.
"""

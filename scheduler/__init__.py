"""Schedules as code: one Cloud Scheduler job per source, kept in sync with ``tributary schedule sync``.

:mod:`scheduler.sync` builds the desired jobs, plans the difference with the live ones and applies
it; :mod:`scheduler.cli` is the ``tributary schedule`` command group (``diff``, ``sync``).
"""

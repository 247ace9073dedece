"""The local web app: the same estimates as the command line, with charts.

Every page is a rendering of a JSON endpoint under ``/api/`` (see :mod:`api`), and
every error has the one JSON shape of :meth:`vramplan.errors.VramplanError.to_dict`.
Standard library only: no web framework to install.
"""

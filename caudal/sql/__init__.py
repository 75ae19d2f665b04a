"""The SQL front end: parse (sqlglot, caudal dialect), resolve names and types, and hand the
plan pieces to caudal.plan. (``cd.sql``, the frame API's function, is defined in caudal's
``__init__``.)"""

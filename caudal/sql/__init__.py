"""The SQL front end: parse (sqlglot, caudal dialect), resolve names and types, build plans."""

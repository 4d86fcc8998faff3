"""`sluice query`: the named Athena queries (and ad-hoc SQL in Athena's dialect), run on Athena
for a deployment or with DuckDB over the local stack's staging bucket.

`command` is the command itself; `queries` finds and reads the query files, `tables` says what
each Glue table holds and where, `translate` turns Athena's SQL into DuckDB's, `local` and
`athena` run it, `results` prints it.
"""

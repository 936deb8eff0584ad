"""Many booths: a fleet service that is just another client of every booth.

``liaison fleet CONFIG`` connects to each booth listed in CONFIG (an ordinary
``liaison serve``), keeps a live model of all of them, writes every event and
data row into one central store (PostgreSQL, or an embedded SQLite file with
the same schema) and serves a fleet dashboard on its own port. Booths keep no
shared state and know nothing of the fleet.
"""

"""Luigi adapter for jobs_core (see the Luigi issue); nothing here yet."""

"""Airflow adapter for jobs_core (see the Airflow issue); nothing here yet."""

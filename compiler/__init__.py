"""obsrv compiler: parse → typed spec → plan (IR) → emit a Databricks bundle job."""

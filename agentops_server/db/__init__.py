"""The hub's database: models, engines, migrations."""

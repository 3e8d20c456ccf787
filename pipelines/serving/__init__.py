"""The prediction service: serves ``models:/<name>@champion`` and follows the alias without a restart."""

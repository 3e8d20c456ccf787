"""The prediction service: serves ``models:/<name>@champion`` of every served model, each on its own routes,
and follows the aliases without a restart."""

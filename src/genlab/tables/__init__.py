"""`genlab table`: paper-style tables from sweep specs (spec, cells cache, runner, rendering, plot)."""

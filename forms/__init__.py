"""WTForms classes, one module per area. Forms validate shape; services enforce the rules."""

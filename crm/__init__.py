"""telehub CRM for dealers (after-sales): the API comes in a later release."""

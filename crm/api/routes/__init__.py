"""One router per resource; ``crm.api.app`` includes them all."""

"""SMTP ingress, authenticated submission and the inter-region relay (aiosmtpd)."""

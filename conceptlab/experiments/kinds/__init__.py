"""Kinds of declarative run beside CBM probes, one file each (``@register_probe_kind("name")``)."""

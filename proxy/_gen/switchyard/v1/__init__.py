"""Generated from proto/ by proxy.admin.protogen; do not edit."""

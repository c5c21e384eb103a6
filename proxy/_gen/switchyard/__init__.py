"""Generated from proto/ by switchyard.proxy.admin.protogen; do not edit."""

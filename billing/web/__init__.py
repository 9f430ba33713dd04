"""The customer dashboard's billing pages (SPEC D3): views, forms, URLs and their selectors."""

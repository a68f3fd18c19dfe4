"""Joint architecture × schedule co-search (``nacos optimize``)."""

"""The "similar products" widget a shop puts on its product pages: one script, one element.

    <script type="module" src="https://LOOKALIKE/api/v1/widget.js"></script>
    <lookalike-similar product="sku-123" k="6"></lookalike-similar>

The element asks the JSON API it was loaded from (GET /api/v1/similar?id=...) and shows a row of
products with their pictures, names, prices and links. The shop's origin must be allowed in
LOOKALIKE_CORS_ORIGINS. Text goes in with textContent and links are http(s) only: a product's name
cannot inject markup into the shop's page.
"""

from pathlib import Path

# Served as it is by the JSON API (GET /api/v1/widget.js).
WIDGET_SCRIPT = (Path(__file__).with_name("widget.js")).read_text(encoding="utf-8")

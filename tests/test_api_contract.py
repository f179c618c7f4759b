"""The API's endpoint names and parameters are a contract with every client: a refactor must not move them."""

from __future__ import annotations

from dataclasses import fields

import pytest

from lookalike.app.layout import AppConfig, build_demo
from lookalike.app.service import LookalikeService, SearchRequest
from lookalike.app.shopper_controls import SearchControls

FILTERS = ["categories", "exclude_own", "not_wanted", "collapse", "facets", "price_min", "price_max", "in_stock_only"]
OPTIONS = ["k", "metric", "backbone"]
ENDPOINTS = {
    "/recommend": (["image", *OPTIONS], 3),
    "/compare": (["image_a", "image_b", "backbone"], 1),
    "/search": (["image", *OPTIONS, *FILTERS], 3),
    "/recommend_set": (["images", *OPTIONS, "picked_ids", *FILTERS], 3),
    "/recommend_region": (["editor_value", *OPTIONS, *FILTERS], 3),
    "/recommend_item": (["item_id", *OPTIONS, *FILTERS], 3),
    "/explain": (["image_a", "image_b", "backbone"], 3),
}


@pytest.fixture(scope="module")
def api_info(small_index_dir):
    service = LookalikeService.from_embeddings_dir(small_index_dir.parent)
    return build_demo(service, AppConfig()).get_api_info()["named_endpoints"]


def test_endpoint_names_parameter_names_and_outputs_stay_as_published(api_info):
    published = {
        name: ([p["parameter_name"] for p in endpoint["parameters"]], len(endpoint["returns"]))
        for name, endpoint in api_info.items()
    }
    assert published == ENDPOINTS


def test_search_parameters_default_like_the_page(api_info):
    defaults = {p["parameter_name"]: p["parameter_default"] for p in api_info["/search"]["parameters"][1:]}
    assert defaults == {
        "k": 8,
        "metric": "cosine",
        "backbone": "efficientnet-lite0",
        "categories": [],
        "exclude_own": False,
        "not_wanted": [],
        "collapse": True,
        "facets": [],
        "price_min": None,
        "price_max": None,
        "in_stock_only": False,
    }


def test_one_control_per_search_request_field_in_the_same_order():
    assert [f.name for f in fields(SearchControls)] == [f.name for f in fields(SearchRequest)]
    assert [*SearchRequest.option_names(), *SearchRequest.filter_names()] == OPTIONS + FILTERS

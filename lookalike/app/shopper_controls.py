"""The shopper controls on the page (filters, several products, crop, feedback, heat-maps) and their events."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from lookalike.app.components import with_readable_upload_errors
from lookalike.app.handlers import Handlers
from lookalike.app.service import SearchRequest
from lookalike.app.traffic import EXPLAIN_QUEUE, SET_QUEUE
from lookalike.recommend.feedback import MAX_SET_SIZE


@dataclass(frozen=True)
class RecommendWidgets:
    """The Recommend and Compare tabs' own components that the shopper events read and write."""

    query: gr.Image
    find_button: gr.Button
    gallery: gr.Gallery
    results: gr.JSON
    summary: gr.Markdown
    image_a: gr.Image
    image_b: gr.Image
    tabs: gr.Tabs  # holding the Compare tab, id "compare"


@dataclass(frozen=True)
class SearchControls:
    """One control per `SearchRequest` field, named like it: what every search reads."""

    k: gr.Slider
    metric: gr.Radio
    backbone: gr.Dropdown
    categories: gr.CheckboxGroup
    exclude_own: gr.Checkbox
    not_wanted: gr.Dropdown
    collapse: gr.Checkbox
    facets: gr.Dropdown
    price_min: gr.Number
    price_max: gr.Number
    in_stock_only: gr.Checkbox

    def options(self) -> list:
        return [getattr(self, name) for name in SearchRequest.option_names()]

    def filters(self) -> list:
        return [getattr(self, name) for name in SearchRequest.filter_names()]

    def inputs(self, query, *own) -> list:
        """A search event's inputs in the order of `handlers.search_endpoint`'s signature."""
        return [query, *self.options(), *own, *self.filters()]


def product_ids_input(label: str) -> gr.Dropdown:
    """Catalog product ids, typed in or added from a clicked result.

    It offers no list of products: the page and the API description would then grow with the catalog
    (a million ids is a page of tens of megabytes).
    """
    return gr.Dropdown(choices=[], value=[], multiselect=True, allow_custom_value=True, label=label)


@dataclass(frozen=True)
class CatalogFilters:
    """What the served catalog lets shoppers filter on, for the page's controls."""

    categories: list[str]
    facets: list[str]  # "attribute=value", a bounded list (ProductTable.offered_facets)
    has_prices: bool = False
    has_stock: bool = False


def filter_controls(catalog: CatalogFilters) -> dict:
    """The filter controls, by `SearchRequest` field name; product filters only where the catalog has the data."""
    with gr.Accordion("Filters", open=False):
        chosen = gr.CheckboxGroup(catalog.categories, label="Only these categories (none ticked: all)")
        exclude_own = gr.Checkbox(label="Not my product's category: show matching products of other kinds", value=False)
        not_wanted = product_ids_input('Not wanted ("less like this"; remove to allow again)')
        collapse = gr.Checkbox(label="Show near-identical products once", value=True)
        # A bounded list of the commonest values; any other "attribute=value" can be typed in.
        facets = gr.Dropdown(
            choices=catalog.facets,
            value=[],
            multiselect=True,
            allow_custom_value=True,
            label="Attributes (brand=..., color=...: one attribute's values OR-ed, attributes AND-ed)",
            visible=bool(catalog.facets),
        )
        with gr.Row(visible=catalog.has_prices):
            price_min = gr.Number(value=None, minimum=0, label="Price from (0: any)", min_width=100)
            price_max = gr.Number(value=None, minimum=0, label="Price up to (0: any)", min_width=100)
        in_stock_only = gr.Checkbox(label="In stock only", value=False, visible=catalog.has_stock)
    return {
        "categories": chosen,
        "exclude_own": exclude_own,
        "not_wanted": not_wanted,
        "collapse": collapse,
        "facets": facets,
        "price_min": price_min,
        "price_max": price_max,
        "in_stock_only": in_stock_only,
    }


@dataclass(frozen=True)
class SetControls:
    accordion: gr.Accordion
    uploads: gr.File
    picked: gr.Dropdown
    button: gr.Button


def set_controls() -> SetControls:
    with gr.Accordion(f"Several products you like (up to {MAX_SET_SIZE})", open=False) as accordion:
        # No file_types: Gradio would refuse files by extension, and a JS client's Blob has none.
        # Our decoder reads the bytes instead and names what is wrong with a file that is no image.
        uploads = with_readable_upload_errors(gr.File(file_count="multiple", label="Upload photos"))
        picked = product_ids_input("and/or catalog products: type an id, or add a clicked result")
        button = gr.Button("Find lookalikes of the set")
    return SetControls(accordion, uploads, picked, button)


@dataclass(frozen=True)
class RegionControls:
    editor: gr.ImageEditor
    button: gr.Button


def region_controls() -> RegionControls:
    with gr.Accordion("Crop to the part that matters", open=False):
        gr.Markdown(
            "Upload the photo here, pick the image tool, then crop (✓ to confirm) to the product you mean. "
            "The white brush paints out anything else."
        )
        # Not filled from "Your product": Gradio 6.31 sends a crop back only for a picture uploaded into
        # the editor itself; one the server put there comes back uncropped (checked in headless Chromium).
        # brush=False would also hide the toolbar, crop tool included, so the brush stays, in white.
        editor = with_readable_upload_errors(
            gr.ImageEditor(
                type="filepath",
                image_mode="RGB",
                sources=["upload", "clipboard"],
                transforms=["crop"],
                brush=gr.Brush(colors=["#FFFFFF"], default_color="#FFFFFF", color_mode="fixed"),
                layers=False,
                label="Region of interest",
            )
        )
        button = gr.Button("Find lookalikes of the cropped region")
    return RegionControls(editor, button)


SELECT_HINT = "Click a recommendation, then search from it, hide it, or see why it matches (Compare tab)."


@dataclass(frozen=True)
class FeedbackControls:
    selected_id: gr.Textbox
    selected_note: gr.Markdown
    more: gr.Button
    less: gr.Button
    why: gr.Button
    add_to_set: gr.Button


def feedback_controls() -> FeedbackControls:
    selected_note = gr.Markdown(SELECT_HINT)
    selected_id = gr.Textbox(visible=False, label="Selected product id")
    with gr.Row():
        more = gr.Button("More like this", size="sm")
        less = gr.Button("Less like this", size="sm")
        why = gr.Button("Why this one?", size="sm")
        add_to_set = gr.Button("Add to my set", size="sm")
    return FeedbackControls(selected_id, selected_note, more, less, why, add_to_set)


@dataclass(frozen=True)
class ExplainControls:
    button: gr.Button
    heatmap_a: gr.Image
    heatmap_b: gr.Image
    note: gr.Markdown


def explain_controls() -> ExplainControls:
    button = gr.Button("Why are they similar? (heat-map)")
    note = gr.Markdown()
    with gr.Row():
        heatmap_a = gr.Image(label="What in A matches B", type="pil", interactive=False)
        heatmap_b = gr.Image(label="What in B matches A", type="pil", interactive=False)
    return ExplainControls(button, heatmap_a, heatmap_b, note)


def wire(
    handlers: Handlers,
    demo: gr.Blocks,
    page: RecommendWidgets,
    search: SearchControls,
    product_set: SetControls,
    region: RegionControls,
    feedback: FeedbackControls,
    explain: ExplainControls,
    model_queue: dict,
) -> None:
    """Connect the controls; each search answers like `recommend` and remembers its query for feedback."""
    last_query = gr.State(None)
    answer = [page.gallery, page.results, page.summary, last_query]
    selection = [feedback.selected_id, feedback.selected_note]
    heatmaps = [explain.heatmap_a, explain.heatmap_b, explain.note]

    def search_event(trigger, handler, inputs, outputs=answer, queue=model_queue, **api) -> None:
        event = trigger(handler, inputs, outputs, **api, **queue)
        # New results: the product clicked before may be gone, or elsewhere in the gallery.
        event.then(
            lambda: (None, SELECT_HINT, gr.Gallery(selected_index=None)),
            None,
            [*selection, page.gallery],
            api_visibility="private",
        )

    private = {"api_visibility": "private"}
    # A phone shows the results below the controls: bring them into view when a photo's answer arrives.
    scroll = {"scroll_to_output": True}
    search_event(page.find_button.click, handlers.search, search.inputs(page.query), api_name="search", **scroll)
    search_event(page.query.change, _search_on_change(handlers), search.inputs(page.query), **private, **scroll)
    set_inputs = search.inputs(product_set.uploads, product_set.picked)
    set_button = product_set.button.click
    search_event(set_button, handlers.recommend_set, set_inputs, queue=SET_QUEUE, api_name="recommend_set")
    search_event(
        region.button.click, handlers.recommend_region, search.inputs(region.editor), api_name="recommend_region"
    )
    page.gallery.select(handlers.selected_product, page.results, selection, **private)
    item_inputs = search.inputs(feedback.selected_id)
    search_event(feedback.more.click, handlers.recommend_item, item_inputs, api_name="recommend_item")
    less_inputs = search.inputs(last_query, feedback.selected_id)
    search_event(feedback.less.click, handlers.less_like_this, less_inputs, [*answer, search.not_wanted], **private)
    # A filter changed by the user applies at once (`input`: not when a shared link sets it on load).
    # always_last: typing "100" into a price searches with 100 once typing stops, not with the first "1".
    for control in search.filters():
        search_event(
            control.input, handlers.search_again, search.inputs(last_query), **private, trigger_mode="always_last"
        )
    feedback.why.click(
        _compare_with_selected(handlers),
        [last_query, feedback.selected_id, search.backbone],
        [page.image_a, page.image_b, page.tabs],
        **private,
    ).then(
        handlers.explain,
        [page.image_a, page.image_b, search.backbone],
        heatmaps,
        api_name="explain_selected",  # named, so the public endpoint keeps the name "explain"
        **private,
        **EXPLAIN_QUEUE,
    )
    feedback.add_to_set.click(
        add_to_set,
        [product_set.picked, feedback.selected_id],
        [product_set.picked, product_set.accordion, feedback.selected_note],
        **private,
    )
    explain.button.click(
        handlers.explain, [page.image_a, page.image_b, search.backbone], heatmaps, api_name="explain", **EXPLAIN_QUEUE
    )
    demo.load(
        handlers.open_permalink,
        [search.k, search.metric, search.backbone],
        [*answer, *search.options(), *search.filters()],
        **private,
        **model_queue,
    )


def _search_on_change(handlers: Handlers):
    """Search as soon as a photo arrives; clearing the image clears nothing and raises nothing."""

    def handler(image, *options):
        if image is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return handlers.search(image, *options)

    return handler


def _compare_with_selected(handlers: Handlers):
    """Put the query and the selected product into the Compare tab, where their heat-maps appear."""

    def handler(query, selected_id, backbone):
        if not selected_id or query is None:
            raise gr.Error("Search, then click a recommended product to see why it matches.")
        first = query.images[0] if query.images else handlers.product_image(query.item_ids[0], backbone)
        return first, handlers.product_image(selected_id, backbone), gr.Tabs(selected="compare")

    return handler


def add_to_set(picked, selected_id):
    """Add the clicked product to the liked set ("Several products you like")."""
    if not selected_id:
        raise gr.Error("Click a recommended product first, then add it to your set.")
    picked = list(dict.fromkeys([*(picked or ()), selected_id]))
    if len(picked) > MAX_SET_SIZE:
        raise gr.Error(f"Your set already has {MAX_SET_SIZE} products; remove one first.")
    note = f"Added **{selected_id}** to your set ({len(picked)} of {MAX_SET_SIZE}), under the search button."
    return picked, gr.Accordion(open=True), note

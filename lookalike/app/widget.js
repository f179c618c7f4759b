// The <lookalike-similar> element: see lookalike/app/widget.py.
const API = new URL(".", import.meta.url).href.replace(/\/$/, "");

class LookalikeSimilar extends HTMLElement {
  static get observedAttributes() { return ["product", "k"]; }
  connectedCallback() { this.schedule(); }
  attributeChangedCallback() { if (this.isConnected) this.schedule(); }

  // An element already on the page when the script runs is upgraded with one attributeChangedCallback
  // per attribute and then connectedCallback: one load for them all, not one request each.
  schedule() {
    if (this.pending) return;
    this.pending = true;
    queueMicrotask(() => { this.pending = false; if (this.isConnected) this.load(); });
  }

  async load() {
    const product = this.getAttribute("product");
    if (!product) return;
    const k = this.getAttribute("k") || "6";
    const key = `${product}\n${k}`;
    if (key === this.shown) return;  // showing (or loading) this very answer already
    this.shown = key;
    const ticket = (this.ticket = (this.ticket || 0) + 1);
    const root = this.shadowRoot || this.attachShadow({ mode: "open" });
    root.innerHTML = `<style>
      :host { display: block; font: 14px/1.35 system-ui, sans-serif; }
      .row { display: grid; grid-auto-flow: column; grid-auto-columns: minmax(120px, 1fr); gap: 12px;
             overflow-x: auto; }
      a { color: inherit; text-decoration: none; display: block; }
      img { width: 100%; aspect-ratio: 1; object-fit: contain; background: #f4f4f4; border-radius: 6px; }
      .name { margin-top: 4px; } .price { font-weight: 600; } .note { color: #777; }
    </style><div class="row" part="row"><span class="note">Loading similar products…</span></div>`;
    const row = root.querySelector(".row");
    try {
      const url = `${API}/similar?id=${encodeURIComponent(product)}&k=${encodeURIComponent(k)}`;
      const response = await fetch(url);
      const answer = await response.json();
      if (ticket !== this.ticket) return;  // the product changed meanwhile: a newer load shows its own
      if (!response.ok) throw new Error(typeof answer.detail === "string" ? answer.detail : `HTTP ${response.status}`);
      row.replaceChildren(...answer.products.map((p) => this.card(p)));
      this.dispatchEvent(new CustomEvent("lookalike-loaded", { detail: answer }));
    } catch (error) {
      if (ticket !== this.ticket) return;
      this.shown = null;  // a failed load is tried again when the element is attached or changed again
      row.replaceChildren(Object.assign(document.createElement("span"), { className: "note", textContent: String(error.message || error) }));
    }
  }

  card(product) {
    const safe = /^https?:\/\//i.test(product.link || "") ? product.link : null;
    const card = document.createElement(safe ? "a" : "div");
    card.className = "card";
    card.setAttribute("part", "card");
    if (safe) { card.href = safe; card.target = "_blank"; card.rel = "noopener"; }
    const image = document.createElement("img");
    image.src = product.image_url; image.alt = product.title || product.id; image.loading = "lazy";
    const name = Object.assign(document.createElement("div"), { className: "name", textContent: product.title || product.id });
    card.append(image, name);
    const paid = product.sale_price ?? product.price;
    if (paid != null) {
      const price = `${Number(paid).toFixed(2)}${product.currency ? " " + product.currency : ""}`;
      card.append(Object.assign(document.createElement("div"), { className: "price", textContent: price }));
    }
    return card;
  }
}

if (!customElements.get("lookalike-similar")) customElements.define("lookalike-similar", LookalikeSimilar);

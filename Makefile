# The two commands of the README: `make app` and `make test`. Both install what they need first.
PYTHON ?= python3
PIP = $(PYTHON) -m pip install --quiet --disable-pip-version-check
# Text files are UTF-8 whatever the machine's locale (a C locale would make Python read and write ASCII).
export PYTHONUTF8 = 1

.PHONY: install install-dev app test lint

install:
	$(PIP) -r requirements.txt

install-dev: install
	$(PIP) -r requirements-dev.txt
	@# Optional at run time (build_index.py --engine ray), installed here so CI runs the Ray engine test.
	$(PIP) -r requirements-scale.txt
	@# The browser test needs Debian's chromium and its driver: Selenium cannot download a browser build offline.
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if command -v apt-get >/dev/null; then \
			$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
			$$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
		else echo "No chromium/chromedriver and no apt-get: tests/test_browser.py will be skipped."; fi; \
	fi

app: install
	$(PYTHON) app.py

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: install-dev lint
	$(PYTHON) -m pytest -q

# Backbone comparisons of the README (issue: evaluation). One command each.
BACKBONES = efficientnet-lite0 mobilenet-v2 color-histogram
FMNIST = data/fashion-mnist-10k

.PHONY: eval-bundled eval-fashion-mnist
eval-bundled:
	for m in $(BACKBONES); do test -d embeddings/$$m || $(PYTHON) build_index.py --model $$m --output embeddings/$$m \
		--license gpl-2.0; done
	$(PYTHON) -m lookalike.evaluate $(addprefix embeddings/,$(BACKBONES)) --protocol leave-one-out \
		--k 1 5 10 20 --report reports/bundled

# A seeded stratified subset of Fashion-MNIST: 1,000 train images per class as the catalog,
# 200 test images per class as queries (12,000 images to embed per backbone).
eval-fashion-mnist:
	test -d $(FMNIST) || $(PYTHON) scripts/prepare_fashion_mnist.py --output $(FMNIST) \
		--train-per-class 1000 --test-per-class 200
	for m in $(BACKBONES); do test -d $(FMNIST)-embeddings/$$m || $(PYTHON) build_index.py $(FMNIST) \
		--split-column split --model $$m --output $(FMNIST)-embeddings/$$m; done
	$(PYTHON) -m lookalike.evaluate $(addprefix $(FMNIST)-embeddings/,$(BACKBONES)) \
		--k 1 5 10 20 --report reports/fashion-mnist

# Fine-tuning (issue: fine-tuning). The bundled catalog's fine-tuned backbone is committed in models/.
TUNED = models/efficientnet-lite0-finetuned
FMNIST_TUNED = models/fashion-mnist-lite0

.PHONY: finetune-bundled finetune-fashion-mnist
finetune-bundled:
	test -f $(TUNED)/model.safetensors || $(PYTHON) -m lookalike.finetune --output $(TUNED)
	test -d embeddings/efficientnet-lite0-finetuned || $(PYTHON) build_index.py --model $(TUNED) \
		--output embeddings/efficientnet-lite0-finetuned --license gpl-2.0
	$(PYTHON) -m lookalike.evaluate embeddings/efficientnet-lite0 embeddings/efficientnet-lite0-finetuned \
		embeddings/mobilenet-v2 embeddings/color-histogram --k 1 5 10 --report reports/finetune-bundled

# Street-to-shop (issue: street-to-shop): shoppers' photos of the catalog's products in real scenes.
# The instance fine-tuned backbone and its build are committed; these remake them and the table.
INSTANCE = models/efficientnet-lite0-instance

.PHONY: finetune-instance street-to-shop
finetune-instance:
	test -f $(INSTANCE)/model.safetensors || $(PYTHON) -m lookalike.finetune --objective instance --output $(INSTANCE)
	test -d embeddings/efficientnet-lite0-instance || $(PYTHON) build_index.py --model $(INSTANCE) \
		--output embeddings/efficientnet-lite0-instance --license gpl-2.0

street-to-shop: finetune-instance
	test -f data/street-held-out/model.safetensors || $(PYTHON) -m lookalike.finetune --objective instance \
		--protocol held-out --epochs 5 --output data/street-held-out
	$(PYTHON) benchmarks/street_to_shop.py --scratch data/street-to-shop --held-out-model data/street-held-out \
		--json benchmarks/street-to-shop.json

# Fine-tune on the Fashion-MNIST subset's train split; compare on its test split, and check the
# tuned model on another domain (the bundled catalog, leave-one-out) against the pre-trained one.
finetune-fashion-mnist: eval-fashion-mnist
	test -f $(FMNIST_TUNED)/model.safetensors || $(PYTHON) -m lookalike.finetune --source $(FMNIST) \
		--split-column split --output $(FMNIST_TUNED) --trainable-blocks 8 --views 2 --epochs 6
	test -d $(FMNIST)-embeddings/tuned || $(PYTHON) build_index.py $(FMNIST) --split-column split \
		--model $(FMNIST_TUNED) --output $(FMNIST)-embeddings/tuned
	$(PYTHON) -m lookalike.evaluate $(FMNIST)-embeddings/efficientnet-lite0 $(FMNIST)-embeddings/tuned \
		--k 1 5 10 20 --report reports/finetune-fashion-mnist
	test -d data/bundled-fashion-mnist-tuned || $(PYTHON) build_index.py --model $(FMNIST_TUNED) \
		--output data/bundled-fashion-mnist-tuned
	$(PYTHON) -m lookalike.evaluate embeddings/efficientnet-lite0 data/bundled-fashion-mnist-tuned \
		--protocol leave-one-out --k 1 5 10 --report reports/finetune-fashion-mnist-other-domain

# The same two backbones on all of Fashion-MNIST: 10,000 test queries against 60,000 train images.
FMNIST_FULL = data/fashion-mnist-full
.PHONY: finetune-fashion-mnist-full
finetune-fashion-mnist-full: finetune-fashion-mnist
	test -d $(FMNIST_FULL) || $(PYTHON) scripts/prepare_fashion_mnist.py --output $(FMNIST_FULL)
	for m in efficientnet-lite0 $(FMNIST_TUNED); do test -d $(FMNIST_FULL)-embeddings/$$(basename $$m) || \
		$(PYTHON) build_index.py $(FMNIST_FULL) --split-column split --model $$m \
		--output $(FMNIST_FULL)-embeddings/$$(basename $$m); done
	$(PYTHON) -m lookalike.evaluate $(FMNIST_FULL)-embeddings/efficientnet-lite0 \
		$(FMNIST_FULL)-embeddings/fashion-mnist-lite0 --k 1 5 10 20 --json reports/finetune-fashion-mnist/full-10k-vs-60k.json

# Recall@10 of the served ANN settings on real embeddings (issue: a million products): all 70,000
# Fashion-MNIST images (train + test) with EfficientNet-Lite0, the index forced on with sqrt(N) cells.
# Not for CI: about 15 minutes of embedding on 2 cores.
FMNIST_ALL_EMBEDDINGS = $(FMNIST_FULL)-embeddings/efficientnet-lite0
.PHONY: recall-fashion-mnist
recall-fashion-mnist:
	test -d /usr/share/datasets/fashion-mnist || $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq dataset-fashion-mnist
	test -d $(FMNIST_FULL) || $(PYTHON) scripts/prepare_fashion_mnist.py --output $(FMNIST_FULL)
	test -d $(FMNIST_ALL_EMBEDDINGS) || $(PYTHON) build_index.py $(FMNIST_FULL) --split-column split \
		--model efficientnet-lite0 --output $(FMNIST_ALL_EMBEDDINGS)
	$(PYTHON) benchmarks/recall.py $(FMNIST_ALL_EMBEDDINGS) --queries 2000 --json benchmarks/recall-fashion-mnist.json

# A million products through the app: benchmarks/scale.py builds 30k, 100k and 1M synthetic-from-real
# products, `python app.py` serves each in turn, a light HTTP client measures (benchmarks/README.md).
# Not for CI: about half an hour, and 26 GB of disk at 1M (deleted afterwards).
.PHONY: scale-app
scale-app:
	$(PYTHON) benchmarks/scale_app.py --items 30000 100000 1000000 --json benchmarks/scale.json

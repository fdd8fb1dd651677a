# make bench MODEL=jldcf|bbsnet|d3net|clip-tiny|rgbd-clip|clip [CKPT=file] [DATA=folder DATASET=NJU2K] [SUITE=default|own|transfer|clip] [DEVICE=cpu] [WORKERS=N (Ray; RAY_ADDRESS=head for a cluster)] [ARGS="--model-arg backbone=resnet50"]
# make transfer [MODELS="jldcf bbsnet d3net"]   make defenses [MODELS=...]   make patch-defenses [MODELS=...]   make perf   make compare BASE=HEAD~1
# make poison [MODEL=clip-tiny] [ATTACKS=badnets,blended,wanet,targeted] [WORKERS=2] [DEFENSES=none,safeclip,roclip,cleanclip] [SEEDS=3] [RATE=0.03] [TARGET=star] [DATA=pairs.csv EVAL_DATA=folder]
# make regress BASE=HEAD~1 [HEAD=rev] [SUITE=regression] [MODELS="jldcf clip-tiny" (default: one per family)] [DEVICE=cuda]   make train MODEL=jldcf [PIN=1]
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MODEL  ?= jldcf
DEVICE ?= cpu
BASE   ?= HEAD~1
RUN    := $(PY) -m benchmark run $(if $(WORKERS),--workers $(WORKERS))
MODELS ?= jldcf bbsnet d3net

.PHONY: bench poison transfer defenses patch-defenses test compare regress report browser list train perf venv clean

$(PY): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(PY)

venv: $(PY)

bench: $(PY)
	$(RUN) --model $(MODEL) --device $(DEVICE) $(if $(SUITE),--suite $(SUITE)) \
		$(if $(CKPT),--ckpt $(CKPT)) $(if $(DATA),--data $(DATA)) $(if $(DATASET),--dataset $(DATASET)) $(ARGS)

# the poisoning grid (CLIP pre-trained on poisoned pairs, with the training-time defenses) -> leaderboards/poisoning.md;
# MODEL defaults to clip-tiny here (jldcf elsewhere), DATA is an image-caption CSV with EVAL_DATA a class-folder set
poison: $(PY)
	$(PY) -m benchmark poison --device $(DEVICE) --workers $(or $(WORKERS),2) $(if $(filter command line environment,$(origin MODEL)),--model $(MODEL)) \
		$(if $(ATTACKS),--attacks $(ATTACKS)) $(if $(DEFENSES),--defenses $(DEFENSES)) $(if $(SEEDS),--seeds $(SEEDS)) \
		$(if $(RATE),--rate $(RATE)) $(if $(TARGET),--target $(TARGET)) $(if $(DATA),--data $(DATA)) \
		$(if $(EVAL_DATA),--eval-data $(EVAL_DATA)) $(ARGS)

# every model in MODELS under attacks crafted on every surrogate of benchmark/suites/transfer.yaml
transfer: $(PY)
	for m in $(MODELS); do $(RUN) --model $$m --suite transfer --device $(DEVICE) $(ARGS) || exit 1; done

# the defenses suite on every model in MODELS and its adversarially trained variant -> leaderboards/saliency-defenses.md
defenses: $(PY)
	for m in $(MODELS) $(addsuffix -tiny-at,$(MODELS)); do \
		$(RUN) --model $$m --suite defenses --device $(DEVICE) $(ARGS) || exit 1; done

# the patch-defenses suite on every model in MODELS -> leaderboards/saliency-patch-defenses.md
patch-defenses: $(PY)
	for m in $(MODELS); do \
		$(RUN) --model $$m --suite patch-defenses --device $(DEVICE) $(ARGS) || exit 1; done

# retrain MODEL by its recipe and check it reaches its pinned target; PIN=1 then replaces the pinned weights
train: $(PY)
	$(PY) -m benchmark train --model $(MODEL) --device $(DEVICE) $(if $(PIN),--pin) $(ARGS)

test: $(PY)
	$(PY) -m pytest -q

compare: $(PY)
	$(PY) -m benchmark compare $(BASE) $(HEAD) $(ARGS)

# the regression suite at BASE and HEAD (default: the working tree) on this checkout's pinned weights, compared
regress: $(PY)
	$(PY) -m benchmark regress $(BASE) $(HEAD) --suite $(or $(SUITE),regression) --device $(DEVICE) \
		$(if $(filter command line environment,$(origin MODELS)),--models "$(MODELS)") $(ARGS)

# the self-contained HTML report of leaderboards/ and results/ -> leaderboards/index.html
report: $(PY)
	$(PY) -m benchmark report $(ARGS)

# a Chromium for the report's browser test: Debian's package (apt-get, as root) unless one is there (GitHub's
# runners have google-chrome); `make test` skips that test without one
browser:
	command -v chromium >/dev/null || command -v google-chrome >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium)

list: $(PY)
	$(PY) -m benchmark list

perf: $(PY)
	$(PY) -m benchmark.perf $(ARGS)

clean:
	rm -rf $(VENV) results

# make bench MODEL=jldcf [CKPT=file] [DATA=folder DATASET=NJU2K] [SUITE=default] [DEVICE=cpu] [ARGS="--model-arg backbone=resnet50"]
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MODEL  ?= jldcf
SUITE  ?= default
DEVICE ?= cpu
BASE   ?= HEAD~1

.PHONY: bench test compare list train venv clean

$(PY): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(PY)

venv: $(PY)

bench: $(PY)
	$(PY) -m benchmark run --model $(MODEL) --suite $(SUITE) --device $(DEVICE) \
		$(if $(CKPT),--ckpt $(CKPT)) $(if $(DATA),--data $(DATA)) $(if $(DATASET),--dataset $(DATASET)) $(ARGS)

train: $(PY)
	$(PY) -m benchmark train --model $(MODEL)

test: $(PY)
	$(PY) -m pytest -q

compare: $(PY)
	$(PY) -m benchmark compare $(BASE) $(HEAD) $(ARGS)

list: $(PY)
	$(PY) -m benchmark list

clean:
	rm -rf $(VENV) results

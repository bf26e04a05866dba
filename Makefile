# hprune: build, test, demo, bench. `make demo` and `make test` are all the set-up there is:
# both run `make deps` first, which installs missing Debian packages (as root) or says how.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= gcc
BUILD   ?= build

DEBS = libopenblas-dev liblapacke-dev libpng-dev zlib1g-dev libcmocka-dev libinih-dev libcjson-dev dataset-fashion-mnist

OPT      ?= -O3 -march=native
CPPFLAGS += -I/usr/include/x86_64-linux-gnu/openblas-pthread -I.
CFLAGS   += -std=c11 -D_GNU_SOURCE $(OPT) -g -fopenmp -Wall -Wextra -Werror
LDLIBS   += -lopenblas -llapacke -lpng -lz -linih -lcjson -lm
LDFLAGS  += -fopenmp

LIB_SRC  = $(wildcard nn/*.c hessian/*.c prune/*.c formats/*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test check-unit sanitize demo bench install uninstall clean hprune
.DEFAULT_GOAL := all

all: deps
	@$(MAKE) --no-print-directory hprune

# Installs what is missing, only when something is missing.
deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "make deps: installing$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing || exit 1; \
	  else \
	    echo "make deps: missing Debian packages; run:"; \
	    echo "  sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

CLI_OBJ = $(BUILD)/hprune.o $(patsubst %.c,$(BUILD)/%.o,$(wildcard cli/*.c))

# The binary is built inside $(BUILD) (so a sanitizer build never replaces ./hprune) and
# copied to ./hprune for the default build.
hprune: $(BUILD)/hprune
	cp $< $@

$(BUILD)/hprune: $(CLI_OBJ) $(BUILD)/libhprune.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libhprune.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The direct convolution kernel is written for fused multiply-adds (ISO C mode turns contraction
# off); its 16-float vectors stay inside the file, so the ABI note for targets without AVX-512 is moot.
$(BUILD)/nn/conv_direct.o $(BUILD)/nn/conv_winograd.o: CFLAGS += -ffp-contract=fast -Wno-psabi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(BUILD)/libhprune.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libhprune.a $(LDFLAGS) $(LDLIBS) -lcmocka

# the out-of-memory test makes the library's allocations fail through its wrappers of these, and
# the memory-size test counts their bytes
$(BUILD)/tests/test_oom $(BUILD)/tests/test_memsize: $(BUILD)/tests/%: tests/%.c tests/testutil.h tests/alloc_wrap.h $(BUILD)/libhprune.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libhprune.a $(LDFLAGS) -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc \
	  $(LDLIBS) -lcmocka

# the command line's shared helpers (cli/common.c) have a unit test of their own
$(BUILD)/tests/test_outputs: tests/test_outputs.c tests/testutil.h $(BUILD)/cli/common.o $(BUILD)/libhprune.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/cli/common.o $(BUILD)/libhprune.a $(LDFLAGS) $(LDLIBS) -lcmocka

$(BUILD)/bench/%: bench/%.c $(BUILD)/libhprune.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libhprune.a $(LDFLAGS) $(LDLIBS)

# The suite: every cmocka binary, then the command-line tests; one summary line at the end.
test: deps
	@$(MAKE) --no-print-directory check-unit

check-unit: $(BUILD)/hprune $(TEST_BIN)
	@CC="$(CC)" HPRUNE=$(BUILD)/hprune sh tests/run_all.sh $(TEST_BIN)

# The same suite built with AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize: deps
	@$(MAKE) --no-print-directory BUILD=build-san OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	  LDFLAGS="-fopenmp -fsanitize=address,undefined" check-unit

# The main job on Fashion-MNIST: train lenet5 (or reuse the trained one), remove half of its
# MACs by Hessian-aware pruning (hap), fine-tune, show the slim model and the report.
DEMO_MODEL = runs/demo_lenet5.safetensors
DEMO_SLIM  = runs/demo_lenet5_hap50.safetensors
demo: deps
	@$(MAKE) --no-print-directory -s hprune
	@mkdir -p runs
	@if [ -f $(DEMO_MODEL) ]; then echo "using the trained $(DEMO_MODEL) (delete it to train again)"; \
	else echo "./hprune train --config configs/lenet5_fmnist.ini -o $(DEMO_MODEL)"; \
	  ./hprune train --config configs/lenet5_fmnist.ini -o $(DEMO_MODEL) || exit 1; fi
	./hprune prune $(DEMO_MODEL) --method hap --target-flops 0.5 --finetune-epochs 3 \
	  -o $(DEMO_SLIM) --report $(DEMO_SLIM:.safetensors=.md)
	./hprune info $(DEMO_SLIM)
	@cat $(DEMO_SLIM:.safetensors=.md)

bench: deps
	@$(MAKE) --no-print-directory hprune $(BENCH_BIN)
	@BUILD=$(BUILD) sh bench/run_bench.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 hprune $(DESTDIR)$(PREFIX)/bin/hprune

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/hprune

clean:
	rm -rf build build-san hprune

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

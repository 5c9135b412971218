# khyve — build, test, demo, benchmarks.  `make help` lists the targets.

BUILD ?= build
CC ?= gcc
V ?= 0
Q := $(if $(filter 1,$(V)),,@)

# kvmtool's warning set, plus -Werror
WARNINGS := -Wall -Wextra -Werror -Wformat=2 -Winit-self -Wmissing-declarations \
	-Wmissing-prototypes -Wnested-externs -Wold-style-definition -Wredundant-decls \
	-Wsign-compare -Wstrict-prototypes -Wundef -Wvolatile-register-var \
	-Wwrite-strings -Wshadow -Wno-format-nonliteral
CFLAGS ?= -O2 -g
# before KHYVE_CFLAGS/LDLIBS, which expand them immediately
ifeq ($(FUZZ),1)
# (clang also counts libseccomp's SCMP_A0() as missing initialisers, and
# warns of the GNU C that KVM's flexible-array headers need)
SAN_CFLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined -DKHYVE_SAN -Wno-missing-field-initializers \
	-Wno-gnu-variable-sized-type-not-at-end
SAN_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(SAN),1)
SAN_CFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
	-DKHYVE_SAN
SAN_LDFLAGS := -fsanitize=address,undefined
endif
KHYVE_CFLAGS := -std=gnu11 $(WARNINGS) -Iinclude -D_GNU_SOURCE -pthread -MMD -MP $(SAN_CFLAGS)
LDLIBS := -pthread -ljansson -lcbor -lxxhash -luring $(SAN_LDFLAGS)

# PCI bus and device types: -s is checked against their registry, so the
# unit tests link them too
PCI_SRCS := src/pci/pci.c src/pci/irq.c src/virtio/pci.c src/virtio/io.c src/virtio/queue.c src/virtio/rng.c \
	src/virtio/console.c src/virtio/net.c src/virtio/blk.c src/virtio/blk_snap.c src/virtio/blk_opts.c \
	src/disk/raw.c src/disk/queue.c src/disk/uring.c src/disk/pool.c src/net/tap.c \
	src/console/chardev.c
CORE_SRCS := src/core/log.c src/core/util.c src/core/memmap.c src/core/bus.c \
	src/core/device.c src/core/vm.c src/core/exit.c src/core/vcpu.c src/core/config.c \
	src/core/term.c src/core/loop.c src/core/seccomp.c src/core/outq.c src/core/user.c \
	src/arch/x86/multiboot.c src/arch/x86/mptable.c src/arch/x86/acpi.c src/arch/x86/aml.c \
	src/arch/x86/cpuid.c src/arch/x86/msr.c src/arch/x86/irqchip.c src/arch/x86/boot.c src/arch/x86/linux.c \
	src/arch/x86/machine.c src/arch/x86/vcpu.c \
	src/hw/uart16550.c src/hw/serial.c src/hw/i8042.c src/hw/debug_exit.c src/hw/acpi_pm.c \
	$(PCI_SRCS)
SNAPSHOT_SRCS := src/snapshot/format.c src/arch/x86/vmstate.c src/snapshot/sections.c \
	src/snapshot/save.c src/snapshot/restore.c src/snapshot/inspect.c
KHYVE_SRCS := src/main.c $(CORE_SRCS) $(SNAPSHOT_SRCS) src/control/server.c src/control/socket.c
KHYVE_OBJS := $(KHYVE_SRCS:%.c=$(BUILD)/%.o)
# khyvectl links everything but main.c: --inspect must know every device
# section exactly as khyve -r does
CTL_SRCS := src/ctl/khyvectl.c $(CORE_SRCS) $(SNAPSHOT_SRCS) src/control/server.c src/control/socket.c
CTL_OBJS := $(CTL_SRCS:%.c=$(BUILD)/%.o)

UNIT_TESTS := multiboot multiboot_elf linux uart memmap cpuid config mptable acpi bus \
	snapshot snapshot_corrupt snapshot_fields snapshot_fuzz pci pci_config pci_msix vconsole vnet vblk vblk_snap \
	seccomp outq chardev
UNIT_BINS := $(UNIT_TESTS:%=$(BUILD)/tests/test_%)
# modules each unit test links (besides its own file)
UNIT_LIB_SRCS := src/core/log.c src/core/util.c src/core/memmap.c src/core/bus.c \
	src/core/config.c src/arch/x86/multiboot.c src/arch/x86/mptable.c src/arch/x86/acpi.c \
	src/arch/x86/aml.c src/arch/x86/linux.c src/arch/x86/cpuid.c src/hw/uart16550.c \
	src/core/device.c src/core/seccomp.c src/core/term.c src/core/outq.c \
	src/snapshot/format.c src/arch/x86/vmstate.c src/snapshot/sections.c \
	src/arch/x86/irqchip.c $(PCI_SRCS)
# Test seams: hooks that only the unit tests call are compiled only into a
# second copy of their file, built with KHYVE_TEST_SEAMS, that only the unit
# tests link; khyve, khyvectl and test_devices link the production objects.
SEAM_SRCS := src/virtio/net.c
UNIT_LIB_OBJS := $(filter-out $(SEAM_SRCS:%.c=$(BUILD)/%.o),$(UNIT_LIB_SRCS:%.c=$(BUILD)/%.o)) \
	$(SEAM_SRCS:%.c=$(BUILD)/seams/%.o)
# what the unit tests share (the fake VM, its guest driver): every test binary links it
UNIT_HELPER_OBJS := $(BUILD)/tests/unit/fakevm.o

# Debian packages the build needs; missing ones are installed once.
NEEDED_FILES := /usr/include/cmocka.h /usr/include/cbor.h /usr/include/jansson.h \
	/usr/include/xxhash.h /usr/include/liburing.h /usr/include/seccomp.h /usr/bin/qemu-system-x86_64 /usr/bin/python3 \
	/bin/busybox
DEPS_MISSING := $(filter-out $(wildcard $(NEEDED_FILES)),$(NEEDED_FILES))

all: deps $(BUILD)/khyve $(BUILD)/khyvectl guest

-include guest/guest.mk

guest: $(GUEST_TARGETS)

deps:
ifneq ($(DEPS_MISSING),)
	sh scripts/install-deps.sh
endif

$(BUILD)/khyve: $(KHYVE_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(KHYVE_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/khyvectl: $(CTL_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(KHYVE_CFLAGS) -o $@ $^ $(LDLIBS)

# The seccomp allow-lists, compiled to BPF at build time by libseccomp (the
# run time then needs neither libseccomp nor 1.5-2.5 ms to compile them).
# The generator is built without sanitizers but with KHYVE_SAN, so an ASan
# build gets the sanitizer runtimes' calls on its lists.
SECCOMP_GEN_SRCS := src/core/seccomp_gen.c src/core/seccomp_lists.c
$(BUILD)/gen/seccomp_gen: $(SECCOMP_GEN_SRCS) include/khyve/seccomp.h
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) -O2 -std=gnu11 $(WARNINGS) $(if $(filter 1,$(FUZZ)),-Wno-missing-field-initializers) \
		-Iinclude -D_GNU_SOURCE $(if $(SAN_CFLAGS),-DKHYVE_SAN) \
		-o $@ $(SECCOMP_GEN_SRCS) -lseccomp

$(BUILD)/gen/seccomp_bpf.h: $(BUILD)/gen/seccomp_gen
	@echo "  GEN     $@"
	$(Q)$< > $@.tmp && mv $@.tmp $@

$(BUILD)/src/core/seccomp.o: $(BUILD)/gen/seccomp_bpf.h
$(BUILD)/src/core/seccomp.o: KHYVE_CFLAGS += -I$(BUILD)/gen

# the unit test compares the build-time name table with libseccomp's
$(BUILD)/tests/test_seccomp: LDLIBS += -lseccomp

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(KHYVE_CFLAGS) -c -o $@ $<

$(BUILD)/seams/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $< (test seams)"
	$(Q)$(CC) $(CFLAGS) $(KHYVE_CFLAGS) -DKHYVE_TEST_SEAMS -c -o $@ $<

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(UNIT_HELPER_OBJS) $(UNIT_LIB_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(KHYVE_CFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# a topic split over several test binaries: they share its helpers too
$(addprefix $(BUILD)/tests/test_,multiboot multiboot_elf): $(BUILD)/tests/unit/mbhelp.o
$(addprefix $(BUILD)/tests/test_,snapshot snapshot_corrupt snapshot_fields snapshot_fuzz): \
	$(BUILD)/tests/unit/snaphelp.o
$(addprefix $(BUILD)/tests/test_,pci pci_config pci_msix): $(BUILD)/tests/unit/pcihelp.o
$(addprefix $(BUILD)/tests/test_,vblk vblk_snap): $(BUILD)/tests/unit/vblkhelp.o

# the device round trip needs every device, so links all of khyve but main.c
$(BUILD)/tests/test_devices: $(BUILD)/tests/unit/test_devices.o $(UNIT_HELPER_OBJS) \
		$(filter-out $(BUILD)/src/main.o,$(KHYVE_OBJS))
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(KHYVE_CFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

unit: deps $(UNIT_BINS) $(BUILD)/tests/test_devices

test: all unit fixtures linux-image
	$(Q)sh tests/run.sh $(BUILD)

# every check, also the repetitions the core set leaves out
test-full: all unit fixtures linux-image
	$(Q)KHYVE_TEST_SET=full sh tests/run.sh $(BUILD)

# the stock Linux checks alone, also in the test machine (which make test leaves out)
test-linux: all unit fixtures linux-image
	$(Q)KHYVE_TEST_SET=full KHYVE_TEST_SCRIPTS=40-linux sh tests/run.sh $(BUILD) integration

# the stock Linux guest (Debian's kernel, busybox initramfs): rebuilt when its scripts change
linux-image:
	$(Q)sh scripts/linux-image $(BUILD)/linux

# a shell (or CMD) in the test machine: make testvm [CMD="..."]
testvm: all unit fixtures
	$(Q)scripts/testvm $(or $(CMD),bash)

asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SAN=1 all unit fixtures linux-image

test-asan: asan
	$(Q)KHYVE_SAN=1 sh tests/run.sh build-asan

demo: all linux-image
	$(Q)bash scripts/demo.sh $(BUILD)

$(BUILD)/bench/blkhost: bench/blkhost.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) -O2 -Wall -Wextra -o $@ $< -luring

# stock Linux against QEMU (in the test machine where KVM cannot run Linux)
bench-linux: all linux-image
	$(Q)python3 bench/linux.py $(BUILD)

bench: all $(BUILD)/bench/blkhost
	$(Q)python3 bench/boot.py $(BUILD)
	$(Q)python3 bench/snapshot.py $(BUILD)
	$(Q)python3 bench/devices.py $(BUILD)

clean:
	rm -rf build build-asan

# libFuzzer on the state-file reader (tests/fuzz/fuzz_state.c), with clang,
# ASan and UBSan, from the stored samples; FUZZ_SECONDS bounds the run
FUZZ_SECONDS ?= 60
FUZZ_OBJS := $(filter-out $(BUILD)/src/main.o,$(KHYVE_OBJS)) $(BUILD)/tests/fuzz/fuzz_state.o
$(BUILD)/tests/fuzz_state: $(FUZZ_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(KHYVE_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz:
	$(Q)$(MAKE) --no-print-directory BUILD=build-fuzz FUZZ=1 CC=clang build-fuzz/tests/fuzz_state
	$(Q)mkdir -p build-fuzz/corpus && cp tests/data/v*/*.state build-fuzz/corpus/
	build-fuzz/tests/fuzz_state -max_total_time=$(FUZZ_SECONDS) -max_len=262144 -rss_limit_mb=1024 \
		-timeout=5 build-fuzz/corpus

help:
	@echo "make            build build/khyve and the test guest"
	@echo "make demo       stock Linux on 2 vCPUs: boot, suspend, restore in a new process"
	@echo "make test       unit and integration tests (the core set in the test machine)"
	@echo "make test-full  every check, also the repetitions the core set leaves out"
	@echo "make test-linux the stock Linux checks alone (also where make test leaves them out)"
	@echo "make testvm     a shell in the test machine (CMD=... runs a command instead)"
	@echo "make asan       build with ASan+UBSan into build-asan/; make test-asan runs the tests"
	@echo "make fuzz       libFuzzer on the state-file reader (clang; FUZZ_SECONDS=60)"
	@echo "make bench      benchmarks (see README); make bench-linux: stock Linux vs QEMU"

.PHONY: all guest deps unit test test-full test-linux testvm asan test-asan fuzz demo bench bench-linux clean help linux-image
.DELETE_ON_ERROR:
# keep the unit tests' objects: make's "rm ..." of intermediates would
# otherwise print after the tests' closing "N passed, N failed" line
.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Tiny multiboot kernels for the integration tests (tests/fixtures/*.S).
FIXTURES := ok mbinfo halt triple reset bigbss echo unclaimed spew
FIXTURE_BINS := $(FIXTURES:%=$(BUILD)/tests/fixtures/%.elf)

$(BUILD)/tests/fixtures/%.elf: tests/fixtures/%.S tests/fixtures/common.inc
	@mkdir -p $(dir $@)
	@echo "  AS      $<"
	$(Q)$(CC) -m32 -c -o $(@:.elf=.o) $<
	$(Q)ld -m elf_i386 -N -Ttext=0x100000 --no-warn-rwx-segments -o $@ $(@:.elf=.o)

# LD_PRELOAD shim that widens bind()-to-listen() for the control race check
$(BUILD)/tests/fixtures/slow_listen.so: tests/fixtures/slow_listen.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

# LD_PRELOAD shim that makes a forbidden system call in a checkpoint (50-seccomp)
$(BUILD)/tests/fixtures/forbid_call.so: tests/fixtures/forbid_call.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

# LD_PRELOAD shim that makes a forbidden call in the memory writer (50-seccomp)
$(BUILD)/tests/fixtures/forbid_writer.so: tests/fixtures/forbid_writer.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

# LD_PRELOAD shim that stops a checkpoint's memory writer (24-save-async)
$(BUILD)/tests/fixtures/stop_writer.so: tests/fixtures/stop_writer.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

fixtures: $(FIXTURE_BINS) $(BUILD)/tests/fixtures/slow_listen.so $(BUILD)/tests/fixtures/forbid_call.so \
	$(BUILD)/tests/fixtures/forbid_writer.so $(BUILD)/tests/fixtures/stop_writer.so
.PHONY: fixtures

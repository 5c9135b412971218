# khyve test guest -- make fragment, included from the top-level Makefile
# (paths are relative to the repository root). Standalone:
#   make -f guest/guest.mk [BUILD=build]
#
# Defines $(BUILD)/guest/testguest (ELF32 multiboot image for QEMU -kernel and
# khyve), $(BUILD)/guest/testguest.elf64 (the same kernel as ELF64) and
# $(BUILD)/guest/testguest-ref (host reference digest), listed in GUEST_TARGETS.
# Uses only GUEST_* variables: the top-level CFLAGS/LDFLAGS never reach the
# freestanding kernel; sanitizer flags from CFLAGS/LDFLAGS are passed on to
# the host reference only.

GUEST_SAVED_GOAL := $(.DEFAULT_GOAL)

BUILD ?= build
GUEST_DIR := guest
GUEST_OUT := $(BUILD)/guest

GUEST_CC ?= gcc
GUEST_LD ?= ld
GUEST_OBJCOPY ?= objcopy
GUEST_HOSTCC ?= $(CC)

GUEST_WARN := -Wall -Wextra -Werror
GUEST_FREESTANDING := -std=gnu11 -O2 -g $(GUEST_WARN) -ffreestanding -nostdlib \
	-fno-pic -fno-pie -fno-stack-protector -fcf-protection=none \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fno-exceptions \
	-mno-red-zone -mcmodel=small -I$(GUEST_DIR) -MMD -MP
# ring 0: emulated under PVM, general registers only, no POPCNT
GUEST_KCFLAGS := $(GUEST_FREESTANDING) -mgeneral-regs-only -mno-popcnt
# ring 3: native; baseline x86-64 (SSE2), wider paths chosen at run time
GUEST_UCFLAGS := $(GUEST_FREESTANDING)
GUEST_ASFLAGS := -I$(GUEST_DIR) -MMD -MP -g
GUEST_LDFLAGS := -m elf_x86_64 -nostdlib -static -z max-page-size=0x1000 -z noexecstack \
	-T $(GUEST_DIR)/kernel.ld

GUEST_HOST_SANFLAGS ?= $(sort $(filter -fsanitize=% -fno-sanitize=% -fno-omit-frame-pointer,$(CFLAGS) $(LDFLAGS)))
GUEST_HOST_CFLAGS := -std=gnu11 -O2 -g $(GUEST_WARN) -I$(GUEST_DIR) -MMD -MP $(GUEST_HOST_SANFLAGS)
GUEST_HOST_LDFLAGS := $(GUEST_HOST_SANFLAGS)

GUEST_K_OBJS := $(GUEST_OUT)/k/boot.o $(GUEST_OUT)/k/kernel.o $(GUEST_OUT)/k/kernel_cpus.o $(GUEST_OUT)/k/klib.o
GUEST_U_OBJS := $(GUEST_OUT)/u/user.o $(GUEST_OUT)/u/work.o $(GUEST_OUT)/u/fpu.o $(GUEST_OUT)/u/vrng.o $(GUEST_OUT)/u/vcon.o $(GUEST_OUT)/u/vpci.o \
	$(GUEST_OUT)/u/vblk.o $(GUEST_OUT)/u/vnet.o $(GUEST_OUT)/u/hostile.o $(GUEST_OUT)/u/hostile_req.o \
	$(GUEST_OUT)/u/hostile_ring.o $(GUEST_OUT)/u/hostile_regs.o $(GUEST_OUT)/u/hostile_dev.o $(GUEST_OUT)/u/bench.o
GUEST_H_OBJS := $(GUEST_OUT)/host/ref.o $(GUEST_OUT)/host/work.o $(GUEST_OUT)/host/fpu.o
GUEST_DEPS := $(patsubst %.o,%.d,$(GUEST_K_OBJS) $(GUEST_U_OBJS) $(GUEST_H_OBJS))

GUEST_TARGETS := $(GUEST_OUT)/testguest $(GUEST_OUT)/testguest.elf64 $(GUEST_OUT)/testguest-ref

.PHONY: guest-all guest-clean
guest-all: $(GUEST_TARGETS)

guest-clean:
	rm -rf $(GUEST_OUT)

$(GUEST_OUT)/k/boot.o: $(GUEST_OUT)/k/%.o: $(GUEST_DIR)/%.S
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_ASFLAGS) -c $< -o $@

$(filter-out %/boot.o,$(GUEST_K_OBJS)): $(GUEST_OUT)/k/%.o: $(GUEST_DIR)/%.c
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_KCFLAGS) -c $< -o $@

$(GUEST_U_OBJS): $(GUEST_OUT)/u/%.o: $(GUEST_DIR)/%.c
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_UCFLAGS) -c $< -o $@

$(GUEST_H_OBJS): $(GUEST_OUT)/host/%.o: $(GUEST_DIR)/%.c
	@mkdir -p $(@D)
	$(GUEST_HOSTCC) $(GUEST_HOST_CFLAGS) -c $< -o $@

$(GUEST_OUT)/testguest.elf64: $(GUEST_K_OBJS) $(GUEST_U_OBJS) $(GUEST_DIR)/kernel.ld
	$(GUEST_LD) $(GUEST_LDFLAGS) -o $@ $(GUEST_K_OBJS) $(GUEST_U_OBJS)

# QEMU's -kernel loads only ELF32 multiboot images: same code, 32-bit container
$(GUEST_OUT)/testguest: $(GUEST_OUT)/testguest.elf64
	$(GUEST_OBJCOPY) -O elf32-i386 $< $@

$(GUEST_OUT)/testguest-ref: $(GUEST_H_OBJS)
	$(GUEST_HOSTCC) $(GUEST_HOST_LDFLAGS) -o $@ $(GUEST_H_OBJS)

-include $(GUEST_DEPS)

# Do not steal the including Makefile's default goal.
ifeq ($(firstword $(MAKEFILE_LIST)),$(GUEST_DIR)/guest.mk)
.DEFAULT_GOAL := guest-all
else
.DEFAULT_GOAL := $(GUEST_SAVED_GOAL)
endif

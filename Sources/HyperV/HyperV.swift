/// HyperV: the vocabulary of the Microsoft Hypervisor Top-Level Functional Specification (TLFS)
/// and Linux's hyperv-tlfs.h: CPUID leaves and bits, synthetic MSR numbers and fields, hypercall
/// control words and status codes, page layouts. Values and layouts only: no state, no I/O.
/// Names follow the TLFS so a reader can cross-check against it.
public enum HyperV {}

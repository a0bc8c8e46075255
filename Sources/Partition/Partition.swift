/// Partition: the HV#1 state machines (synthetic MSRs, hypercall dispatch, reference time,
/// crash reporting). Pure: guest memory, interrupts, clocks and VM events are reached through
/// the small protocols in PartitionEnvironment.swift, so everything runs in unit tests.
public enum PartitionModule {}

// The IPC wire records (Sources/IPC/WireRecord.swift, SynICRouterRecords.swift): what a worker
// or the supervisor decodes from a peer it does not trust. The whole input is one record for
// `WireMessage.decode`, and again for each record type's own `decode`.
//
// Checked: nothing traps; the encoding is canonical (a record that decodes encodes back to
// exactly the input bytes: explicit offsets, reserved zero, no trailing bytes); each type's own
// decoder agrees with `WireMessage.decode`.
import FuzzSupport
import IPC

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = FuzzInput(data, size).bytes
    let message = try? WireMessage.decode(bytes)
    if let message { precondition(message.encoded() == bytes, "decoded record does not encode back to its bytes") }
    agree(WorkerHello.self, bytes, message) { if case .workerHello(let r) = $0 { r } else { nil } }
    agree(RegionLayout.self, bytes, message) { if case .regionLayout(let r) = $0 { r } else { nil } }
    agree(SeccompProgram.self, bytes, message) { if case .seccompProgram(let r) = $0 { r } else { nil } }
    agree(SynICRouterSetup.self, bytes, message) { if case .synicRouterSetup(let r) = $0 { r } else { nil } }
    agree(SINTEventFDs.self, bytes, message) { if case .sintEventFDs(let r) = $0 { r } else { nil } }
    agree(PostedMessageRecord.self, bytes, message) { if case .postedMessage(let r) = $0 { r } else { nil } }
    agree(TestDeviceWriteRecord.self, bytes, message) { if case .testDeviceWrite(let r) = $0 { r } else { nil } }
    agree(VMBusWorkerSetup.self, bytes, message) { if case .vmbusWorkerSetup(let r) = $0 { r } else { nil } }
    // The header alone, as a stream reader peeks at it before the body has arrived.
    bytes.withUnsafeBytes { _ = try? WireHeader.decode($0) }
    return 0
}

/// `R.decode` accepts exactly what `WireMessage.decode` decoded as an R, and gives the same record.
func agree<R: WireRecord>(_ type: R.Type, _ bytes: [UInt8], _ message: WireMessage?, _ extract: (WireMessage) -> R?) {
    let own = try? R.decode(bytes)
    let viaMessage = message.flatMap(extract)
    precondition(own == viaMessage, "\(R.self).decode and WireMessage.decode disagree")
}

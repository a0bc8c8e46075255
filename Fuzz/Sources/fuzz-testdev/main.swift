// The hyperv-testdev port protocol: `TestDeviceCommand(value:)` on every 32-bit port write,
// and the record the monitor forwards it in (`TestDeviceWriteRecord`) through its wire codec,
// as the router worker receives it. Each 4 input bytes are one port write.
//
// Checked: a decoded command encodes back to the value it came from; an undefined control code
// decodes to nil; the forwarded record decodes to itself.
import FuzzSupport
import IPC
import SynICRouting

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestDevice(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    var sequence: UInt64 = 0
    while !input.isEmpty {
        let value = input.u32()
        sequence &+= 1
        if let command = TestDeviceCommand(value: value) {
            precondition(command.value == value, "testdev command does not encode back to its port value")
            precondition((1...7).contains(command.control.rawValue), "testdev control code out of range")
        } else {
            precondition(!(1...7).contains(UInt8(truncatingIfNeeded: value >> 16)), "a defined control code was refused")
        }
        let record = TestDeviceWriteRecord(vp: UInt32(input.u8()), value: value, sequence: sequence)
        guard case .testDeviceWrite(let back) = try? WireMessage.decode(record.encoded()), back == record else {
            preconditionFailure("a testdev record does not survive its wire encoding")
        }
    }
    return 0
}

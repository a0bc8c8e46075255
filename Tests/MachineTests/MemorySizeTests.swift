import Testing

@testable import Machine

private let validSizes: [(String, UInt64)] = [
    ("268435456", 268_435_456),
    ("4096", 4096),
    ("256M", 256 << 20),
    ("256m", 256 << 20),
    ("256MiB", 256 << 20),
    ("256mib", 256 << 20),
    ("1G", 1 << 30),
    ("1g", 1 << 30),
    ("1GiB", 1 << 30),
    ("512K", 512 << 10),
    ("4k", 4 << 10),
    ("4KiB", 4 << 10),
    ("0256M", 256 << 20),
    ("64G", 64 << 30),
    ("17179869183G", 17_179_869_183 << 30),  // 2^64 - 2^30: the largest G value that fits
]

private let invalidSizes: [(String, MemorySizeError)] = [
    ("", .empty),
    ("abc", .invalidSyntax("abc")),
    ("M", .invalidSyntax("M")),
    ("-1M", .invalidSyntax("-1M")),
    ("+1M", .invalidSyntax("+1M")),
    ("1.5G", .invalidSyntax("1.5G")),
    (" 1G", .invalidSyntax(" 1G")),
    ("1G ", .invalidSyntax("1G ")),
    ("1 G", .invalidSyntax("1 G")),
    ("0x1000", .invalidSyntax("0x1000")),
    ("1G1", .invalidSyntax("1G1")),
    ("2T", .unsupportedUnit("2T")),
    ("2TiB", .unsupportedUnit("2TiB")),
    ("256MB", .unsupportedUnit("256MB")),
    ("256Mi", .unsupportedUnit("256Mi")),
    ("256MXB", .unsupportedUnit("256MXB")),
    ("1B", .unsupportedUnit("1B")),
    ("0", .zero("0")),
    ("0M", .zero("0M")),
    ("000G", .zero("000G")),
    ("99999999999G", .overflow("99999999999G")),
    ("17179869184G", .overflow("17179869184G")),  // exactly 2^64
    ("18446744073709551616", .overflow("18446744073709551616")),
    ("99999999999999999999999999", .overflow("99999999999999999999999999")),
    ("4095", .notPageMultiple("4095")),
    ("1000", .notPageMultiple("1000")),
    ("1K", .notPageMultiple("1K")),
    ("6K", .notPageMultiple("6K")),
]

@Suite struct MemorySizeTests {
    @Test(arguments: validSizes)
    func accepts(text: String, bytes: UInt64) throws {
        #expect(try MemorySize.parse(text) == bytes)
    }

    @Test(arguments: invalidSizes)
    func rejects(text: String, error: MemorySizeError) {
        #expect(throws: error) { try MemorySize.parse(text) }
    }

    @Test func largestValueIsExact() throws {
        #expect(try MemorySize.parse("18446744073709547520") == UInt64.max - 4095)
    }

    @Test func messagesAreOneLineAndNameTheText() {
        for (text, error) in invalidSizes {
            let message = error.description
            #expect(!message.contains("\n"))
            if !text.isEmpty {
                #expect(message.contains("\"\(text)\""), "\(message)")
            }
        }
        #expect(MemorySizeError.empty.description.contains("empty"))
    }

    @Test func nonASCIIInputIsRejectedNotTrapped() {
        #expect(throws: MemorySizeError.invalidSyntax("١G")) { try MemorySize.parse("١G") }  // Arabic-Indic 1
        #expect(throws: MemorySizeError.unsupportedUnit("1Gé")) { try MemorySize.parse("1Gé") }
        #expect(throws: MemorySizeError.invalidSyntax("1G\u{0}")) { try MemorySize.parse("1G\u{0}") }
    }
}

import HyperV
import Partition
import Testing

@Suite struct EnlightenmentsParseTests {
    @Test func offBaseAndDefault() throws {
        let off = try Enlightenments.parse("off")
        #expect(off.isOff)
        #expect(off == .off)
        #expect(off.features.isEmpty)
        #expect(off.names.isEmpty)

        let base = try Enlightenments.parse("base")
        #expect(!base.isOff)
        #expect(base.features.isEmpty)
        #expect(base == .base)

        let d = try Enlightenments.parse("default")
        #expect(!d.isOff)
        #expect(d == .default)
        #expect(d.names == ["runtime", "time", "reset", "frequencies", "crash", "relaxed", "ipi", "messages"])
        #expect(!d.has(.xmmInput))
    }

    @Test func defaultIsEverythingButXMMInput() {
        #expect(Enlightenments.defaultFeatures == Set(Enlightenments.Feature.allCases).subtracting([.xmmInput]))
    }

    @Test func commaList() throws {
        let e = try Enlightenments.parse("time,crash")
        #expect(e.features == [.time, .crash])
        #expect(e.has(.time) && e.has(.crash) && !e.has(.runtime))
        #expect(e.names == ["time", "crash"])

        let order = try Enlightenments.parse("crash,time")
        #expect(order == e, "order does not matter")
        #expect(order.names == ["time", "crash"], "names come in table order")

        let xmm = try Enlightenments.parse("default,xmm-input")
        #expect(xmm.features == Enlightenments.defaultFeatures.union([.xmmInput]))
    }

    @Test func spacesAroundItems() throws {
        #expect(try Enlightenments.parse(" default , -crash ") == Enlightenments(
            features: Enlightenments.defaultFeatures.subtracting([.crash])))
        #expect(try Enlightenments.parse("\toff ") == .off)
    }

    @Test func removal() throws {
        let e = try Enlightenments.parse("default,-crash,-ipi")
        #expect(e.features == Enlightenments.defaultFeatures.subtracting([.crash, .ipi]))
        #expect(try Enlightenments.parse("time,crash,-time").features == [.crash])
        #expect(try Enlightenments.parse("base,time").features == [.time])
        // Removing everything leaves the base interface, which is not off.
        let all = Enlightenments.Feature.allCases.filter { $0 != .xmmInput }.map { "-" + $0.rawValue }
        let bare = try Enlightenments.parse((["default"] + all).joined(separator: ","))
        #expect(bare == .base)
        #expect(!bare.isOff)
    }

    @Test(arguments: [
        ("", EnlightenmentsError.empty),
        ("  ", .empty),
        ("time,,crash", .emptyItem(position: 2)),
        (",time", .emptyItem(position: 1)),
        ("time,", .emptyItem(position: 2)),
        ("time, ,crash", .emptyItem(position: 2)),
        ("bogus", .unknownName("bogus")),
        ("time,bogus", .unknownName("bogus")),
        ("-bogus", .unknownName("bogus")),
        ("Time", .unknownName("Time")),
        ("xmm_input", .unknownName("xmm_input")),
        ("on", .unknownName("on")),
        ("time,time", .duplicate("time")),
        ("default,time", .duplicate("time")),
        ("default,default", .setNotFirst("default")),
        ("default,-crash,-crash", .duplicate("-crash")),
        ("time,-time,time", .duplicate("time")),
        ("-crash", .removesNothing("crash")),
        ("default,-xmm-input", .removesNothing("xmm-input")),
        ("base,-time", .removesNothing("time")),
        ("off,time", .offNotAlone),
        ("time,off", .offNotAlone),
        ("off,off", .offNotAlone),
        ("time,default", .setNotFirst("default")),
        ("time,base", .setNotFirst("base")),
        ("default,base", .setNotFirst("base")),
    ])
    func errors(text: String, error: EnlightenmentsError) {
        #expect(throws: error) { try Enlightenments.parse(text) }
    }

    @Test func errorDescriptionsNameTheItem() {
        #expect(EnlightenmentsError.unknownName("bogus").description.contains("'bogus'"))
        #expect(EnlightenmentsError.unknownName("bogus").description.contains("xmm-input"), "lists known names")
        #expect(EnlightenmentsError.duplicate("time").description.contains("'time'"))
        #expect(EnlightenmentsError.removesNothing("crash").description.contains("'-crash'"))
        #expect(EnlightenmentsError.emptyItem(position: 3).description.contains("3"))
        #expect(EnlightenmentsError.setNotFirst("default").description.contains("'default'"))
        #expect(EnlightenmentsError.offNotAlone.description.contains("off"))
    }

    /// Every subset of the features, printed and parsed back, is the same set.
    @Test func descriptionRoundTripsForEverySubset() throws {
        let all = Enlightenments.Feature.allCases
        for mask in 0..<(1 << all.count) {
            let set = Set(all.enumerated().filter { mask & (1 << $0.offset) != 0 }.map(\.element))
            let e = Enlightenments(features: set)
            #expect(try Enlightenments.parse(e.description) == e, "\(e.description)")
        }
        #expect(try Enlightenments.parse(Enlightenments.off.description) == .off)
        #expect(Enlightenments.base.description == "base")
        #expect(Enlightenments.off.description == "off")
    }

    @Test func everyFeatureNameParses() throws {
        for f in Enlightenments.Feature.allCases {
            #expect(try Enlightenments.parse(f.rawValue).features == [f])
        }
    }
}

// The text policy parser (format: docs/policy-format.md). Pure: files are read through a
// closure, so tests feed it strings and the supervisor feeds it the installed Policies/.
//
// Strict by design: every mistake is an error with file:line, never a silently wider filter.

/// A policy that cannot be used, and where.
public struct PolicyError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        case syntax(String)
        case unknownSyscall(String)
        case unknownConstant(String)
        case badArgumentIndex(String)
        case badNumber(String)
        /// A second rule for a syscall; `first` is where the first one is.
        case duplicateRule(syscall: String, first: SourceLocation)
        case duplicateValue(String)
        case missingDefault
        case duplicateDefault(first: SourceLocation)
        case defaultInInclude
        case badAction(String)
        case includeNotFound(String)
        case includeCycle(String)
        /// `$NAME` that is no `PolicyRuntimeValue`.
        case unknownRuntimeValue(String)
        /// A runtime value the compiling process does not have (a worker's policy).
        case unresolvedRuntimeValue(PolicyRuntimeValue)
    }

    public var location: SourceLocation
    public var kind: Kind

    public init(_ kind: Kind, at location: SourceLocation) {
        self.kind = kind
        self.location = location
    }

    public var message: String {
        switch kind {
        case .syntax(let m): m
        case .unknownSyscall(let n): "unknown system call '\(n)' (not in the x86-64 table)"
        case .unknownConstant(let n): "unknown constant '\(n)'"
        case .badArgumentIndex(let a): "bad argument '\(a)': expected arg0 ... arg5"
        case .badNumber(let n): "bad number '\(n)'"
        case .duplicateRule(let s, let first): "second rule for '\(s)' (first at \(first))"
        case .duplicateValue(let v): "value \(v) listed twice in a set"
        case .missingDefault: "missing '@default kill|trap|log|errno N'"
        case .duplicateDefault(let first): "second @default (first at \(first))"
        case .defaultInInclude: "@default belongs in the top-level policy, not in an include"
        case .badAction(let a): "bad default action '\(a)': expected kill, trap, log or errno N"
        case .includeNotFound(let p): "cannot read included file '\(p)'"
        case .includeCycle(let p): "include cycle: '\(p)' is already being included"
        case .unknownRuntimeValue(let n):
            "unknown runtime value '$\(n)' (known: \(PolicyRuntimeValue.allCases.map(\.description).joined(separator: ", ")))"
        case .unresolvedRuntimeValue(let v):
            "\(v) has no value here: it is resolved only for a filter the compiling process installs on "
                + "itself (the monitor's own policies), never for a worker's policy, compiled before the worker exists"
        }
    }

    /// One line: `file:line: message`.
    public var description: String { "\(location): \(message)" }
}

public struct PolicyParser: Sendable {
    /// Reads a file by path; nil if it does not exist or cannot be read.
    public typealias FileReader = @Sendable (String) -> String?

    public let readFile: FileReader

    public init(readFile: @escaping FileReader) {
        self.readFile = readFile
    }

    /// Parses the policy at `path` (includes are resolved relative to each including file).
    public func parse(file path: String) throws(PolicyError) -> Policy {
        let path = Self.normalize(path)
        guard let text = readFile(path) else {
            throw PolicyError(.includeNotFound(path), at: SourceLocation(file: path, line: 0))
        }
        return try parse(text: text, file: path)
    }

    /// Parses `text` as the top-level policy named `file`.
    public func parse(text: String, file: String) throws(PolicyError) -> Policy {
        var state = State()
        let file = Self.normalize(file)
        try parseFile(text: text, file: file, isTop: true, stack: [file], state: &state)
        guard let action = state.defaultAction else {
            throw PolicyError(.missingDefault, at: SourceLocation(file: file, line: 1))
        }
        return Policy(defaultAction: action, rules: state.rules)
    }

    /// Parses with a fixed set of files (path -> text); convenient for tests and embedded policies.
    public static func parse(file: String, files: [String: String]) throws(PolicyError) -> Policy {
        try PolicyParser(readFile: { files[normalize($0)] }).parse(file: file)
    }

    // MARK: - Files and lines

    private struct State {
        var defaultAction: PolicyAction?
        var defaultAt: SourceLocation?
        var rules: [SyscallRule] = []
        var ruleAt: [String: SourceLocation] = [:]
    }

    private func parseFile(text: String, file: String, isTop: Bool, stack: [String],
                           state: inout State) throws(PolicyError) {
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let at = SourceLocation(file: file, line: lineNumber)
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = Self.trim(line)
            if trimmed.isEmpty { continue }

            if trimmed.hasPrefix("@") {
                let (word, rest) = Self.splitWord(trimmed)
                switch word {
                case "@include":
                    guard !rest.isEmpty, !rest.contains(where: { $0 == " " || $0 == "\t" }) else {
                        throw PolicyError(.syntax("expected '@include <file>'"), at: at)
                    }
                    let target = Self.resolve(String(rest), relativeTo: file)
                    if stack.contains(target) { throw PolicyError(.includeCycle(target), at: at) }
                    guard let included = readFile(target) else {
                        throw PolicyError(.includeNotFound(target), at: at)
                    }
                    try parseFile(text: included, file: target, isTop: false, stack: stack + [target],
                                  state: &state)
                case "@default":
                    guard isTop else { throw PolicyError(.defaultInInclude, at: at) }
                    if let first = state.defaultAt { throw PolicyError(.duplicateDefault(first: first), at: at) }
                    state.defaultAction = try parseDefault(rest, at: at)
                    state.defaultAt = at
                default:
                    throw PolicyError(.syntax("unknown directive '\(word)'"), at: at)
                }
                continue
            }

            guard let colon = trimmed.firstIndex(of: ":") else {
                throw PolicyError(.syntax("expected 'syscall: condition'"), at: at)
            }
            let name = String(Self.trim(trimmed[..<colon]))
            guard !name.isEmpty, name.allSatisfy({ $0 == "_" || $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                throw PolicyError(.syntax("bad system call name '\(name)'"), at: at)
            }
            guard let number = SyscallTable.number(of: name) else {
                throw PolicyError(.unknownSyscall(name), at: at)
            }
            if let first = state.ruleAt[name] {
                throw PolicyError(.duplicateRule(syscall: name, first: first), at: at)
            }
            let body = Self.trim(trimmed[trimmed.index(after: colon)...])
            var tokens = try Self.tokenize(body, at: at)
            let conditions = try parseCondition(&tokens, at: at)
            state.rules.append(SyscallRule(syscall: name, number: number, conditions: conditions, source: at))
            state.ruleAt[name] = at
        }
    }

    private func parseDefault(_ text: Substring, at: SourceLocation) throws(PolicyError) -> PolicyAction {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        switch (words.first.map(String.init), words.count) {
        case ("kill", 1): return .killProcess
        case ("trap", 1): return .trap
        case ("log", 1): return .log
        case ("errno", 2):
            let w = String(words[1])
            let v: UInt64
            if let n = Self.number(w) { v = n }
            else if let c = PolicyConstants.errnos[w] { v = c }
            else { throw PolicyError(.badAction(String(text)), at: at) }
            guard (1...4095).contains(v) else { throw PolicyError(.badAction(String(text)), at: at) }
            return .errno(Int32(v))
        default:
            throw PolicyError(.badAction(String(text)), at: at)
        }
    }

    // MARK: - Conditions

    private enum Token: Equatable {
        case word(String)  // identifiers and numbers
        case runtime(String)  // `$NAME`, without the '$'
        case eq, ne, amp, andAnd, bar, orOr, lbrace, rbrace, comma
    }

    private static func tokenize(_ s: Substring, at: SourceLocation) throws(PolicyError) -> [Token] {
        var tokens: [Token] = []
        let chars = Array(s)
        var i = 0
        func peek(_ k: Int) -> Character? { i + k < chars.count ? chars[i + k] : nil }
        while i < chars.count {
            let c = chars[i]
            switch c {
            case " ", "\t", "\r": i += 1
            case "=":
                guard peek(1) == "=" else { throw PolicyError(.syntax("'=' must be '=='"), at: at) }
                tokens.append(.eq); i += 2
            case "!":
                guard peek(1) == "=" else { throw PolicyError(.syntax("'!' must be '!='"), at: at) }
                tokens.append(.ne); i += 2
            case "&":
                if peek(1) == "&" { tokens.append(.andAnd); i += 2 } else { tokens.append(.amp); i += 1 }
            case "|":
                if peek(1) == "|" { tokens.append(.orOr); i += 2 } else { tokens.append(.bar); i += 1 }
            case "{": tokens.append(.lbrace); i += 1
            case "}": tokens.append(.rbrace); i += 1
            case ",": tokens.append(.comma); i += 1
            case "$":
                i += 1
                var w = ""
                while i < chars.count, chars[i] == "_" || (chars[i].isASCII && (chars[i].isLetter || chars[i].isNumber)) {
                    w.append(chars[i]); i += 1
                }
                guard !w.isEmpty else { throw PolicyError(.syntax("'$' must start a runtime value name"), at: at) }
                tokens.append(.runtime(w))
            default:
                guard c == "_" || (c.isASCII && (c.isLetter || c.isNumber)) else {
                    throw PolicyError(.syntax("unexpected character '\(c)'"), at: at)
                }
                var w = ""
                while i < chars.count, chars[i] == "_" || (chars[i].isASCII && (chars[i].isLetter || chars[i].isNumber)) {
                    w.append(chars[i]); i += 1
                }
                tokens.append(.word(w))
            }
        }
        return tokens
    }

    /// condition := '1' | conjunction ('||' conjunction)*
    private func parseCondition(_ tokens: inout [Token], at: SourceLocation) throws(PolicyError) -> [[ArgumentCondition]] {
        if tokens.isEmpty { throw PolicyError(.syntax("missing condition (use '1' to always allow)"), at: at) }
        if tokens == [.word("1")] { return [] }
        var alternatives: [[ArgumentCondition]] = []
        var all: [ArgumentCondition] = []
        var i = 0
        while true {
            all.append(try parseComparison(tokens, &i, at: at))
            if i == tokens.count { alternatives.append(all); break }
            switch tokens[i] {
            case .andAnd: i += 1
            case .orOr: alternatives.append(all); all = []; i += 1
            default: throw PolicyError(.syntax("expected '&&', '||' or end of line"), at: at)
            }
            if i == tokens.count { throw PolicyError(.syntax("condition ends after an operator"), at: at) }
        }
        return alternatives
    }

    /// comparison := argN ('==' | '!=') value | argN '&' value ['==' value] | argN 'in' '{' value, ... '}'
    ///             | argN '==' '$'NAME
    private func parseComparison(_ t: [Token], _ i: inout Int, at: SourceLocation) throws(PolicyError) -> ArgumentCondition {
        guard i < t.count, case .word(let argWord) = t[i] else {
            throw PolicyError(.syntax("expected argN"), at: at)
        }
        if argWord == "1" { throw PolicyError(.syntax("'1' must be the whole condition"), at: at) }
        guard argWord.hasPrefix("arg") else { throw PolicyError(.syntax("expected argN, got '\(argWord)'"), at: at) }
        let digits = argWord.dropFirst(3)
        guard digits.count == 1, let arg = Int(digits), ArgumentCondition.argumentRange.contains(arg) else {
            throw PolicyError(.badArgumentIndex(argWord), at: at)
        }
        i += 1
        guard i < t.count else { throw PolicyError(.syntax("expected an operator after \(argWord)"), at: at) }
        let op = t[i]
        i += 1
        switch op {
        case .eq:
            // A runtime value only as the whole right-hand side of '==': the one use there is
            // (tgkill's tgid), and the only form the per-rule tests can give a witness for.
            if let value = try Self.runtimeValue(t, i, at: at) {
                i += 1
                if i < t.count, t[i] == .bar { throw Self.runtimeMisuse(value, at: at) }
                return ArgumentCondition(arg: arg, op: .equalRuntime(value))
            }
            return ArgumentCondition(arg: arg, op: .equal(try parseValue(t, &i, at: at)))
        case .ne: return ArgumentCondition(arg: arg, op: .notEqual(try parseValue(t, &i, at: at)))
        case .amp:
            let mask = try parseValue(t, &i, at: at)
            if i < t.count, t[i] == .eq {
                i += 1
                let value = try parseValue(t, &i, at: at)
                guard value & ~mask == 0 else {
                    throw PolicyError(.syntax("masked value has bits outside the mask (never true)"), at: at)
                }
                return ArgumentCondition(arg: arg, op: .maskedEqual(mask: mask, value: value))
            }
            guard mask != 0 else { throw PolicyError(.syntax("'& 0' is never true"), at: at) }
            return ArgumentCondition(arg: arg, op: .maskedAny(mask))
        case .word("in"):
            guard i < t.count, t[i] == .lbrace else { throw PolicyError(.syntax("expected '{' after 'in'"), at: at) }
            i += 1
            var values: [UInt64] = []
            while true {
                let v = try parseValue(t, &i, at: at)
                if values.contains(v) { throw PolicyError(.duplicateValue("0x" + String(v, radix: 16)), at: at) }
                values.append(v)
                guard i < t.count else { throw PolicyError(.syntax("missing '}'"), at: at) }
                if t[i] == .comma { i += 1; continue }
                if t[i] == .rbrace { i += 1; break }
                throw PolicyError(.syntax("expected ',' or '}' in a set"), at: at)
            }
            return ArgumentCondition(arg: arg, op: .inSet(values))
        default:
            throw PolicyError(.syntax("expected '==', '!=', '&' or 'in' after \(argWord)"), at: at)
        }
    }

    /// value := atom ('|' atom)*;  atom := number | CONSTANT
    private func parseValue(_ t: [Token], _ i: inout Int, at: SourceLocation) throws(PolicyError) -> UInt64 {
        var result: UInt64 = 0
        while true {
            if let value = try Self.runtimeValue(t, i, at: at) { throw Self.runtimeMisuse(value, at: at) }
            guard i < t.count, case .word(let w) = t[i] else { throw PolicyError(.syntax("expected a value"), at: at) }
            i += 1
            if let first = w.first, first.isNumber {
                guard let n = Self.number(w) else { throw PolicyError(.badNumber(w), at: at) }
                result |= n
            } else if let c = PolicyConstants.value(of: w) {
                result |= c
            } else if w == "in" || w.hasPrefix("arg") && w.dropFirst(3).allSatisfy(\.isNumber) {
                throw PolicyError(.syntax("expected a value, got '\(w)'"), at: at)
            } else {
                throw PolicyError(.unknownConstant(w), at: at)
            }
            if i < t.count, t[i] == .bar { i += 1 } else { return result }
        }
    }

    /// The runtime value token `t[i]` names, if it is one (`$NAME`); an unknown name is an error.
    private static func runtimeValue(_ t: [Token], _ i: Int, at: SourceLocation) throws(PolicyError) -> PolicyRuntimeValue? {
        guard i < t.count, case .runtime(let name) = t[i] else { return nil }
        guard let value = PolicyRuntimeValue(rawValue: name) else { throw PolicyError(.unknownRuntimeValue(name), at: at) }
        return value
    }

    private static func runtimeMisuse(_ value: PolicyRuntimeValue, at: SourceLocation) -> PolicyError {
        PolicyError(.syntax("\(value) may only be compared whole, as 'argN == \(value)'"), at: at)
    }

    // MARK: - Strings and paths

    static func number(_ w: String) -> UInt64? {
        if w.hasPrefix("0x") || w.hasPrefix("0X") {
            let hex = w.dropFirst(2)
            return hex.isEmpty ? nil : UInt64(hex, radix: 16)
        }
        return UInt64(w, radix: 10)
    }

    static func trim(_ s: Substring) -> Substring {
        var s = s
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }

    static func splitWord(_ s: Substring) -> (String, Substring) {
        guard let sp = s.firstIndex(where: { $0 == " " || $0 == "\t" }) else { return (String(s), "") }
        return (String(s[..<sp]), trim(s[sp...]))
    }

    /// `target` relative to the directory of `file` (absolute targets stay as they are).
    static func resolve(_ target: String, relativeTo file: String) -> String {
        if target.hasPrefix("/") { return normalize(target) }
        guard let slash = file.lastIndex(of: "/") else { return normalize(target) }
        return normalize(String(file[...slash]) + target)
    }

    /// Removes `.` and empty components and folds `dir/..`, so one file has one name.
    static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for c in path.split(separator: "/") {
            if c == "." { continue }
            if c == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
            if c == "..", absolute { continue }
            parts.append(c)
        }
        let joined = parts.joined(separator: "/")
        return absolute ? "/" + joined : (joined.isEmpty ? "." : joined)
    }
}

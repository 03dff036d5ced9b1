using System.Buffers.Binary;
using System.Text;

namespace VkPrompt.Model.Tokenization;

/// <summary>
/// sentencepiece's text normalizer (normalizer.cc), byte for byte: user-defined pieces pass through untouched,
/// otherwise the longest precompiled-charsmap rule applies, otherwise one UTF-8 character is copied as is (a malformed
/// byte becomes U+FFFD, consuming that one byte). Then whitespace is trimmed and collapsed, a dummy prefix added and
/// spaces escaped as U+2581, as the spec asks.
/// </summary>
internal sealed class Normalizer
{
    static ReadOnlySpan<byte> SpaceSymbol => "\u2581"u8;
    static ReadOnlySpan<byte> ReplacementCharacter => "\uFFFD"u8;

    readonly NormalizerSpec _spec;
    readonly string _source;
    readonly byte[][] _userDefined;
    // The charsmap is a darts-clone double-array trie over UTF-8 bytes whose values are offsets of NUL-terminated
    // replacement strings in _replacements.
    readonly uint[] _trie = [];
    readonly byte[] _replacements = [];

    /// <param name="spec">The model's normalizer: its rule name, charsmap and whitespace handling.</param>
    /// <param name="userDefinedPieces">Pieces matched verbatim, never normalised.</param>
    /// <param name="source">The model file, for error messages.</param>
    public Normalizer(NormalizerSpec spec, IEnumerable<string> userDefinedPieces, string source)
    {
        _spec = spec;
        _source = source;
        _userDefined = [.. userDefinedPieces.Select(Encoding.UTF8.GetBytes)];
        var blob = spec.PrecompiledCharsmap;
        if (blob.Length == 0)
            return;
        if (blob.Length <= 4)
            throw new ModelFormatException(source, "precompiled_charsmap is broken (too short)");
        uint trieSize = BinaryPrimitives.ReadUInt32LittleEndian(blob);
        if (trieSize > (uint)(blob.Length - 4))
            throw new ModelFormatException(source, "precompiled_charsmap is broken (trie larger than the blob)");
        _trie = new uint[trieSize / 4];
        for (int i = 0; i < _trie.Length; i++)
            _trie[i] = BinaryPrimitives.ReadUInt32LittleEndian(blob.AsSpan(4 + 4 * i));
        _replacements = blob[(4 + (int)trieSize)..];
    }

    public string Normalize(string text) => Encoding.UTF8.GetString(Normalize(Encoding.UTF8.GetBytes(text)));

    public byte[] Normalize(ReadOnlySpan<byte> input)
    {
        bool removeExtra = _spec.RemoveExtraWhitespaces;
        if (removeExtra)
        {
            while (!input.IsEmpty)
            {
                int consumed = NormalizePrefix(input, out var replacement);
                if (!replacement.SequenceEqual(" "u8))
                    break;
                input = input[consumed..];
            }
        }
        if (input.IsEmpty)
            return [];

        var space = _spec.EscapeWhitespaces ? SpaceSymbol : " "u8;
        var output = new List<byte>(input.Length * 3);
        if (_spec.AddDummyPrefix)
            output.AddRange(space);
        bool previousIsSpace = removeExtra;
        while (!input.IsEmpty)
        {
            int consumed = NormalizePrefix(input, out var replacement);
            while (previousIsSpace && !replacement.IsEmpty && replacement[0] == (byte)' ')
                replacement = replacement[1..];
            if (!replacement.IsEmpty)
            {
                foreach (byte b in replacement)
                {
                    if (b == (byte)' ')
                        output.AddRange(space);
                    else
                        output.Add(b);
                }
                previousIsSpace = replacement[^1] == (byte)' ';
            }
            input = input[consumed..];
            if (!removeExtra)
                previousIsSpace = false;
        }
        if (removeExtra)
        {
            while (output.Count >= space.Length && EndsWith(output, space))
                output.RemoveRange(output.Count - space.Length, space.Length);
        }
        return [.. output];
    }

    static bool EndsWith(List<byte> bytes, ReadOnlySpan<byte> suffix)
    {
        for (int i = 0; i < suffix.Length; i++)
        {
            if (bytes[bytes.Count - suffix.Length + i] != suffix[i])
                return false;
        }
        return true;
    }

    /// <summary>Normalizes the first unit of input; returns how many input bytes it covers.</summary>
    int NormalizePrefix(ReadOnlySpan<byte> input, out ReadOnlySpan<byte> replacement)
    {
        int userDefinedLength = 0;
        foreach (var piece in _userDefined)
        {
            if (piece.Length > userDefinedLength && input.StartsWith(piece))
                userDefinedLength = piece.Length;
        }
        if (userDefinedLength > 0)
        {
            replacement = input[..userDefinedLength];
            return userDefinedLength;
        }

        if (LongestCharsmapRule(input, out int ruleLength, out int offset))
        {
            var rest = _replacements.AsSpan(offset);
            int nul = rest.IndexOf((byte)0);
            replacement = nul < 0 ? rest : rest[..nul];
            return ruleLength;
        }

        if (TryDecodeUtf8(input, out int charLength))
        {
            replacement = input[..charLength];
            return charLength;
        }
        replacement = ReplacementCharacter;
        return 1;
    }

    /// <summary>darts-clone commonPrefixSearch, keeping the longest match.</summary>
    bool LongestCharsmapRule(ReadOnlySpan<byte> key, out int length, out int offset)
    {
        length = offset = 0;
        if (_trie.Length == 0)
            return false;
        uint node = Offset(_trie[0]);
        for (int i = 0; i < key.Length; i++)
        {
            node ^= key[i];
            if (node >= _trie.Length)
                throw Corrupt();
            uint unit = _trie[node];
            if (Label(unit) != key[i])
                break;
            node ^= Offset(unit);
            if (HasLeaf(unit))
            {
                if (node >= _trie.Length)
                    throw Corrupt();
                uint value = _trie[node] & 0x7FFFFFFFu;
                if (value >= (uint)_replacements.Length)
                    throw Corrupt();
                (length, offset) = (i + 1, (int)value);
            }
        }
        return length > 0;
    }

    ModelFormatException Corrupt() => new(_source, "precompiled_charsmap trie is corrupt");

    static bool HasLeaf(uint unit) => ((unit >> 8) & 1) != 0;

    // A value unit has bit 31 set, so it never equals a byte label.
    static uint Label(uint unit) => unit & 0x800000FFu;

    static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);

    /// <summary>The byte length sentencepiece assumes for a UTF-8 character from its lead byte (OneCharLen).</summary>
    internal static int Utf8CharLength(byte lead) => (lead >> 4) switch
    {
        < 0xC => 1,
        < 0xE => 2,
        0xE => 3,
        _ => 4,
    };

    /// <summary>sentencepiece's IsValidDecodeUTF8: one well-formed, non-surrogate, shortest-form character.</summary>
    static bool TryDecodeUtf8(ReadOnlySpan<byte> s, out int length)
    {
        length = 1;
        byte lead = s[0];
        if (lead < 0x80)
            return true;
        if (s.Length >= 2 && (lead & 0xE0) == 0xC0)
        {
            int cp = ((lead & 0x1F) << 6) | (s[1] & 0x3F);
            length = IsTrail(s[1]) && cp >= 0x80 ? 2 : 1;
        }
        else if (s.Length >= 3 && (lead & 0xF0) == 0xE0)
        {
            int cp = ((lead & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
            length = IsTrail(s[1]) && IsTrail(s[2]) && cp >= 0x800 && cp is < 0xD800 or >= 0xE000 ? 3 : 1;
        }
        else if (s.Length >= 4 && (lead & 0xF8) == 0xF0)
        {
            int cp = ((lead & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
            length = IsTrail(s[1]) && IsTrail(s[2]) && IsTrail(s[3]) && cp is >= 0x10000 and <= 0x10FFFF ? 4 : 1;
        }
        return length > 1;

        static bool IsTrail(byte b) => (b & 0xC0) == 0x80;
    }
}

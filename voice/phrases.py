"""The fixed sentences callers hear (Twilio <Say>, the session's fallback, the default greeting), in every
language a business can choose, with the voice that reads each language.

One table, so a new phrase is translated everywhere or the test that walks the table fails.
"""

from __future__ import annotations

from accounts.models import Business

LANGUAGES = tuple(Business.Language.values)  # en, es, fr, de, it, pt, nl
DEFAULT_LANGUAGE = "en"

# <Say language> per business language, and a voice that speaks it (Twilio's default voice does not speak
# every one of these languages, and an unsupported voice/language pair fails the <Say>).
SAY_LANGUAGE = {"en": "en-US", "es": "es-ES", "fr": "fr-FR", "de": "de-DE", "it": "it-IT", "pt": "pt-BR", "nl": "nl-NL"}
SAY_VOICE = {"en": "Polly.Joanna-Neural", "es": "Polly.Lucia-Neural", "fr": "Polly.Lea-Neural",
             "de": "Polly.Vicki-Neural", "it": "Polly.Bianca-Neural", "pt": "Polly.Camila-Neural",
             "nl": "Polly.Laura-Neural"}

PHRASES: dict[str, dict[str, str]] = {
    # A call to a number no business holds (there is no business, so no business language).
    "unknown_number": {
        "en": "Sorry, this number is not connected to a receptionist yet. Please check the number and try again. "
              "Goodbye.",
        "es": "Lo sentimos, este número todavía no está conectado a una recepción. Compruebe el número y vuelva a "
              "intentarlo. Adiós.",
        "fr": "Désolé, ce numéro n'est pas encore relié à un accueil téléphonique. Veuillez vérifier le numéro et "
              "réessayer. Au revoir.",
        "de": "Diese Nummer ist leider noch mit keiner Rezeption verbunden. Bitte prüfen Sie die Nummer und "
              "versuchen Sie es erneut. Auf Wiederhören.",
        "it": "Siamo spiacenti, questo numero non è ancora collegato a una reception. Controlli il numero e "
              "riprovi. Arrivederci.",
        "pt": "Desculpe, este número ainda não está ligado a um atendimento. Verifique o número e tente "
              "novamente. Até logo.",
        "nl": "Sorry, dit nummer is nog niet gekoppeld aan een receptie. Controleer het nummer en probeer het "
              "opnieuw. Tot ziens.",
    },
    # Billing refuses the call and it is forwarded to the business's transfer number.
    "billing_forward": {
        "en": "Thank you for calling. Please hold while we connect you.",
        "es": "Gracias por su llamada. Espere un momento, por favor; le estamos comunicando.",
        "fr": "Merci de votre appel. Veuillez patienter, nous vous mettons en relation.",
        "de": "Vielen Dank für Ihren Anruf. Bitte bleiben Sie dran, wir verbinden Sie.",
        "it": "Grazie per aver chiamato. Resti in linea, la stiamo mettendo in contatto.",
        "pt": "Obrigado por ligar. Aguarde um momento enquanto transferimos a sua ligação.",
        "nl": "Bedankt voor uw oproep. Een moment geduld, we verbinden u door.",
    },
    # Billing refuses the call and there is nobody to forward it to.
    "billing_hangup": {
        "en": "Thank you for calling. We can't take your call right now. Please try again later. Goodbye.",
        "es": "Gracias por su llamada. Ahora mismo no podemos atenderle. Por favor, inténtelo de nuevo más tarde. "
              "Adiós.",
        "fr": "Merci de votre appel. Nous ne pouvons pas prendre votre appel pour le moment. Veuillez réessayer "
              "plus tard. Au revoir.",
        "de": "Vielen Dank für Ihren Anruf. Wir können Ihren Anruf gerade leider nicht annehmen. Bitte versuchen "
              "Sie es später noch einmal. Auf Wiederhören.",
        "it": "Grazie per aver chiamato. Al momento non possiamo rispondere alla sua chiamata. La preghiamo di "
              "riprovare più tardi. Arrivederci.",
        "pt": "Obrigado por ligar. No momento não podemos atender a sua ligação. Por favor, tente novamente mais "
              "tarde. Até logo.",
        "nl": "Bedankt voor uw oproep. We kunnen uw oproep nu helaas niet aannemen. Probeer het later nog eens. "
              "Tot ziens.",
    },
    # The model failed mid-call and there is nobody to forward to.
    "unavailable": {
        "en": "I'm sorry, our phone assistant is having trouble right now. Please call back in a few minutes.",
        "es": "Lo sentimos, nuestro asistente telefónico tiene problemas en este momento. Por favor, vuelva a "
              "llamar en unos minutos.",
        "fr": "Nous sommes désolés, notre assistant téléphonique rencontre un problème. Veuillez rappeler dans "
              "quelques minutes.",
        "de": "Es tut uns leid, unser Telefonassistent hat gerade technische Probleme. Bitte rufen Sie in ein "
              "paar Minuten wieder an.",
        "it": "Ci scusi, il nostro assistente telefonico ha un problema in questo momento. La preghiamo di "
              "richiamare tra qualche minuto.",
        "pt": "Desculpe, o nosso assistente telefônico está com problemas no momento. Por favor, ligue novamente "
              "em alguns minutos.",
        "nl": "Het spijt ons, onze telefoonassistent heeft op dit moment problemen. Bel over een paar minuten "
              "terug.",
    },
    # The model failed mid-call and the caller is forwarded to the transfer number.
    # The model is gone and the business takes voicemail: Twilio <Record> follows (with a beep).
    "voicemail_prompt": {
        "en": "I'm sorry, our phone assistant can't take your call right now. Please leave your name, your number "
              "and your message after the tone, and we'll call you back.",
        "es": "Lo sentimos, nuestro asistente telefónico no puede atender su llamada en este momento. Deje su "
              "nombre, su número y su mensaje después de la señal, y le devolveremos la llamada.",
        "fr": "Nous sommes désolés, notre assistant téléphonique ne peut pas prendre votre appel pour le moment. "
              "Laissez votre nom, votre numéro et votre message après le bip, et nous vous rappellerons.",
        "de": "Es tut uns leid, unser Telefonassistent kann Ihren Anruf gerade nicht annehmen. Bitte hinterlassen "
              "Sie nach dem Signalton Ihren Namen, Ihre Nummer und Ihre Nachricht, wir rufen Sie zurück.",
        "it": "Ci scusi, il nostro assistente telefonico non può rispondere in questo momento. Lasci nome, numero e "
              "messaggio dopo il segnale acustico e la richiameremo.",
        "pt": "Desculpe, o nosso assistente telefônico não pode atender a sua ligação agora. Deixe seu nome, seu "
              "número e sua mensagem após o sinal, e retornaremos a ligação.",
        "nl": "Het spijt ons, onze telefoonassistent kan uw oproep nu niet aannemen. Spreek na de toon uw naam, "
              "uw nummer en uw bericht in, dan bellen we u terug.",
    },
    # The voicemail was recorded.
    "voicemail_thanks": {
        "en": "Thank you, we have your message. Goodbye.",
        "es": "Gracias, hemos recibido su mensaje. Adiós.",
        "fr": "Merci, nous avons bien reçu votre message. Au revoir.",
        "de": "Vielen Dank, wir haben Ihre Nachricht erhalten. Auf Wiederhören.",
        "it": "Grazie, abbiamo ricevuto il suo messaggio. Arrivederci.",
        "pt": "Obrigado, recebemos a sua mensagem. Até logo.",
        "nl": "Bedankt, we hebben uw bericht ontvangen. Tot ziens.",
    },
    # <Record> heard nothing (Twilio then goes on to the next verb instead of the action URL).
    "voicemail_nothing": {
        "en": "We didn't hear a message. Please call back later. Goodbye.",
        "es": "No hemos oído ningún mensaje. Por favor, vuelva a llamar más tarde. Adiós.",
        "fr": "Nous n'avons entendu aucun message. Veuillez rappeler plus tard. Au revoir.",
        "de": "Wir haben keine Nachricht gehört. Bitte rufen Sie später noch einmal an. Auf Wiederhören.",
        "it": "Non abbiamo sentito alcun messaggio. La preghiamo di richiamare più tardi. Arrivederci.",
        "pt": "Não ouvimos nenhuma mensagem. Por favor, ligue novamente mais tarde. Até logo.",
        "nl": "We hebben geen bericht gehoord. Belt u later nog eens. Tot ziens.",
    },
    "unavailable_transfer": {
        "en": "I'm sorry, our phone assistant is having trouble. Let me connect you to the team.",
        "es": "Lo sentimos, nuestro asistente telefónico tiene problemas. Le pasamos con el equipo.",
        "fr": "Nous sommes désolés, notre assistant téléphonique rencontre un problème. Nous vous mettons en "
              "relation avec l'équipe.",
        "de": "Es tut uns leid, unser Telefonassistent hat technische Probleme. Wir verbinden Sie mit dem Team.",
        "it": "Ci scusi, il nostro assistente telefonico ha un problema. La mettiamo in contatto con il team.",
        "pt": "Desculpe, o nosso assistente telefônico está com problemas. Vamos transferir você para a equipe.",
        "nl": "Het spijt ons, onze telefoonassistent heeft problemen. We verbinden u door met het team.",
    },
    # A transfer nobody answered (busy, no answer, failed), and a message for the team was saved.
    "transfer_failed_message_taken": {
        "en": "I'm sorry, I couldn't reach anyone. I've taken a message, and the team will call you back. Goodbye.",
        "es": "Lo siento, no he podido contactar con nadie. He dejado un mensaje al equipo y le devolverán la "
              "llamada. Adiós.",
        "fr": "Désolé, je n'ai pu joindre personne. J'ai laissé un message à l'équipe, qui vous rappellera. "
              "Au revoir.",
        "de": "Es tut mir leid, ich konnte niemanden erreichen. Ich habe dem Team eine Nachricht hinterlassen, "
              "Sie werden zurückgerufen. Auf Wiederhören.",
        "it": "Mi dispiace, non è stato possibile raggiungere nessuno. Ho lasciato un messaggio al team, che la "
              "richiamerà. Arrivederci.",
        "pt": "Desculpe, não consegui falar com ninguém. Deixei um recado para a equipe, que vai retornar a sua "
              "ligação. Até logo.",
        "nl": "Het spijt me, ik kon niemand bereiken. Ik heb een bericht voor het team achtergelaten; u wordt "
              "teruggebeld. Tot ziens.",
    },
    # A transfer nobody answered, from a withheld number: there is no number to call back, so no message.
    "transfer_failed": {
        "en": "I'm sorry, I couldn't reach anyone. Please call back later. Goodbye.",
        "es": "Lo siento, no he podido contactar con nadie. Por favor, vuelva a llamar más tarde. Adiós.",
        "fr": "Désolé, je n'ai pu joindre personne. Veuillez rappeler plus tard. Au revoir.",
        "de": "Es tut mir leid, ich konnte niemanden erreichen. Bitte rufen Sie später noch einmal an. "
              "Auf Wiederhören.",
        "it": "Mi dispiace, non è stato possibile raggiungere nessuno. La preghiamo di richiamare più tardi. "
              "Arrivederci.",
        "pt": "Desculpe, não consegui falar com ninguém. Por favor, ligue novamente mais tarde. Até logo.",
        "nl": "Het spijt me, ik kon niemand bereiken. Bel later nog eens terug. Tot ziens.",
    },
    # The server is restarting (a deploy): the agent's last sentence before it hangs up.
    "server_restart": {
        "en": "I'm sorry, I have to end this call now because our phone system is restarting. Please call back "
              "in a minute. Goodbye.",
        "es": "Lo siento, tengo que terminar esta llamada porque nuestro sistema telefónico se está reiniciando. "
              "Vuelva a llamar en un minuto, por favor. Adiós.",
        "fr": "Je suis désolé, je dois mettre fin à cet appel car notre système téléphonique redémarre. Veuillez "
              "rappeler dans une minute. Au revoir.",
        "de": "Es tut mir leid, ich muss das Gespräch jetzt beenden, weil unser Telefonsystem neu startet. Bitte "
              "rufen Sie in einer Minute wieder an. Auf Wiederhören.",
        "it": "Mi dispiace, devo chiudere la chiamata perché il nostro sistema telefonico si sta riavviando. La "
              "preghiamo di richiamare tra un minuto. Arrivederci.",
        "pt": "Desculpe, preciso encerrar esta ligação porque o nosso sistema telefônico está reiniciando. Por "
              "favor, ligue novamente em um minuto. Até logo.",
        "nl": "Het spijt me, ik moet dit gesprek nu beëindigen omdat ons telefoonsysteem opnieuw opstart. Bel over "
              "een minuut terug. Tot ziens.",
    },
    # The agent's first sentence when the business wrote no greeting of its own.
    "default_greeting": {
        "en": "Thank you for calling {name}. How can I help you today?",
        "es": "Gracias por llamar a {name}. ¿En qué puedo ayudarle?",
        "fr": "Merci d'avoir appelé {name}. Comment puis-je vous aider ?",
        "de": "Vielen Dank für Ihren Anruf bei {name}. Wie kann ich Ihnen helfen?",
        "it": "Grazie per aver chiamato {name}. Come posso aiutarla?",
        "pt": "Obrigado por ligar para {name}. Como posso ajudar?",
        "nl": "Bedankt voor het bellen naar {name}. Waarmee kan ik u helpen?",
    },
}


def language_or_default(language: str | None) -> str:
    return language if language in SAY_LANGUAGE else DEFAULT_LANGUAGE


def phrase(key: str, language: str | None, **values: str) -> str:
    """The phrase `key` in `language` (English for a language we have no words for)."""
    text = PHRASES[key][language_or_default(language)]
    return text.format(**values) if values else text

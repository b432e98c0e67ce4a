# Room settings (language, situation, level, title), created_at/created_by, and the
# RoomConversation link for conversations started after a room's first one.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('example', '0001_initial'),
        ('pyhub_ai', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='llmchatroom',
            options={'ordering': ['-pk'], 'verbose_name': 'chat room', 'verbose_name_plural': 'chat rooms'},
        ),
        migrations.AddField(
            model_name='llmchatroom',
            name='language',
            field=models.CharField(choices=[('zh', 'Chinese'), ('en', 'English'), ('ja', 'Japanese'), ('es', 'Spanish'), ('fr', 'French'), ('de', 'German'), ('ko', 'Korean')], default='zh', max_length=8, verbose_name='language'),
        ),
        migrations.AddField(
            model_name='llmchatroom',
            name='situation',
            field=models.CharField(choices=[('starbucks', 'Ordering coffee at Starbucks'), ('restaurant', 'Ordering food at a restaurant'), ('hotel', 'Checking in at a hotel'), ('directions', 'Asking for directions'), ('shopping', 'Shopping for clothes'), ('airport', 'Checking in at the airport'), ('interview', 'A job interview'), ('small_talk', 'Small talk with a new friend')], default='starbucks', max_length=32, verbose_name='situation'),
        ),
        migrations.AddField(
            model_name='llmchatroom',
            name='level',
            field=models.CharField(choices=[('beginner', 'Beginner'), ('intermediate', 'Intermediate'), ('advanced', 'Advanced')], default='beginner', max_length=16, verbose_name='level'),
        ),
        migrations.AddField(
            model_name='llmchatroom',
            name='title',
            field=models.CharField(blank=True, max_length=100, verbose_name='title'),
        ),
        migrations.AddField(
            model_name='llmchatroom',
            name='created_at',
            field=models.DateTimeField(auto_now_add=True, default=django.utils.timezone.now, verbose_name='created at'),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='llmchatroom',
            name='created_by',
            field=models.ForeignKey(blank=True, help_text='May rename and delete the room (staff may too). Everyone may chat in it.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='created by'),
        ),
        migrations.CreateModel(
            name='RoomConversation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('conversation', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='room_conversation', to='pyhub_ai.conversation', verbose_name='conversation')),
                ('room', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='room_conversations', to='example.llmchatroom', verbose_name='chat room')),
            ],
            options={
                'verbose_name': 'room conversation',
                'verbose_name_plural': 'room conversations',
                'ordering': ['pk'],
            },
        ),
    ]
